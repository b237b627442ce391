"""UserStore on a real SQLite file, and the users/apikeys CLI groups."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from stratkernel.api.cli_users import apikeys_group, users_group
from stratkernel.api.users import UserStore
from stratkernel.core.errors import AuthError, StoreError, ValidationError

from .conftest import FAST_HASHER


@pytest.fixture
async def store(tmp_path: Path) -> UserStore:
    s = UserStore(tmp_path / "auth.db", password_hasher=FAST_HASHER)
    await s.open()
    yield s  # type: ignore[misc]
    await s.close()


async def test_users_roundtrip(store: UserStore) -> None:
    await store.add_user("ada", "a good long password", "admin")
    await store.add_user("vic", "another long password", "viewer")
    assert [u.username for u in await store.list_users()] == ["ada", "vic"]
    user = await store.verify_password("vic", "another long password")
    assert user.role == "viewer"
    with pytest.raises(AuthError):
        await store.verify_password("vic", "wrong password entirely")
    await store.set_password("vic", "a changed long password")
    with pytest.raises(AuthError):
        await store.verify_password("vic", "another long password")
    await store.verify_password("vic", "a changed long password")
    await store.remove_user("vic")
    assert await store.get_user("vic") is None
    actions = [e["action"] for e in await store.audit_log()]
    assert actions[:3] == ["user.remove", "user.passwd", "user.add"]


async def test_passwords_are_hashed_with_argon2(store: UserStore, tmp_path: Path) -> None:
    await store.add_user("ada", "plain text never stored", "admin")
    raw = (tmp_path / "auth.db").read_bytes() + (tmp_path / "auth.db-wal").read_bytes()
    assert b"plain text never stored" not in raw
    con = sqlite3.connect(tmp_path / "auth.db")
    (stored,) = con.execute("SELECT password_hash FROM users").fetchone()
    con.close()
    assert stored.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("username", "password", "role", "field"),
    [
        ("bad name", "long enough password", "viewer", "username"),
        ("", "long enough password", "viewer", "username"),
        ("x" * 65, "long enough password", "viewer", "username"),
        ("ok", "short", "viewer", "password"),
        ("ok", "p" * 2000, "viewer", "password"),
        ("ok", "long enough password", "superuser", "role"),
    ],
)
async def test_bad_user_input_names_the_field(
    store: UserStore, username: str, password: str, role: str, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await store.add_user(username, password, role)
    assert info.value.field == field
    assert await store.count_users() == 0


async def test_duplicate_names_are_refused_case_insensitively(store: UserStore) -> None:
    await store.add_user("Ada", "a good long password", "admin")
    with pytest.raises(ValidationError, match="already exists"):
        await store.add_user("ada", "a good long password", "viewer")


async def test_the_last_admin_cannot_be_removed_disabled_or_demoted(store: UserStore) -> None:
    await store.add_user("ada", "a good long password", "admin")
    for action in (
        store.remove_user("ada"),
        store.update_user("ada", disabled=True),
        store.update_user("ada", role="trader"),
    ):
        with pytest.raises(ValidationError, match="last enabled admin"):
            await action
    await store.add_user("bea", "a good long password", "admin")
    await store.update_user("ada", role="trader")
    assert (await store.get_user("ada")).role == "trader"  # type: ignore[union-attr]


async def test_ensure_admin_only_on_an_empty_database(store: UserStore) -> None:
    password = await store.ensure_admin()
    assert password is not None and len(password) >= 20
    assert (await store.verify_password("admin", password)).role == "admin"
    assert await store.ensure_admin() is None


async def test_api_key_role_is_bounded_by_the_owner(store: UserStore) -> None:
    await store.add_user("ada", "a good long password", "admin")
    await store.add_user("tom", "a good long password", "trader")
    with pytest.raises(ValidationError, match="exceeds"):
        await store.create_api_key("tom", "bot", "admin")
    key, secret = await store.create_api_key("ada", "bot", "admin")
    user, _ = await store.verify_api_key(secret)
    assert user.role == "admin"
    # Demoting the owner demotes the key.
    await store.add_user("bea", "a good long password", "admin")
    await store.update_user("ada", role="viewer")
    user, _ = await store.verify_api_key(secret)
    assert user.role == "viewer"
    # Disabling the owner stops the key; removing the owner deletes it.
    await store.update_user("ada", disabled=True)
    with pytest.raises(AuthError, match="disabled"):
        await store.verify_api_key(secret)
    await store.remove_user("ada")
    with pytest.raises(AuthError):
        await store.verify_api_key(secret)
    assert await store.get_api_key(key.id) is None


async def test_migrations_are_versioned_and_refuse_newer_schemas(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    async with UserStore(path, password_hasher=FAST_HASHER) as s:
        await s.add_user("ada", "a good long password", "admin")
    async with UserStore(path, password_hasher=FAST_HASHER) as s:  # reopening keeps data, migrates nothing
        assert await s.count_users() == 1
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_migrations_auth").fetchall() == [(1,)]
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.execute("INSERT INTO schema_migrations_auth VALUES (99, 0)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        async with UserStore(path) as s:
            pass


async def test_coexists_with_other_tables_in_the_same_database(tmp_path: Path) -> None:
    # The kernel store keeps its own schema_migrations table in the same file.
    path = tmp_path / "kernel.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
    con.execute("INSERT INTO schema_migrations VALUES (7)")
    con.commit()
    con.close()
    async with UserStore(path, password_hasher=FAST_HASHER) as s:
        await s.add_user("ada", "a good long password", "admin")
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_migrations").fetchall() == [(7,)]
    con.close()


# ---- CLI -----------------------------------------------------------------------------------------

cli = click.Group(commands={"users": users_group, "apikeys": apikeys_group})


def test_cli_users_and_keys(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    runner = CliRunner()
    r = runner.invoke(
        cli,
        ["users", "add", "ada", "--role", "admin", "--password-stdin", "--db", db],
        input="a good long password\n",
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli, ["users", "add", "bob", "--role", "viewer", "--generate"], env={"STRATKERNEL_DB": db}
    )
    assert r.exit_code == 0, r.output
    generated = r.output.split("password (shown once): ")[1].strip()
    assert len(generated) >= 20
    r = runner.invoke(
        cli, ["users", "add", "eve", "--role", "viewer", "--password-stdin", "--db", db], input="short\n"
    )
    assert r.exit_code != 0 and "at least 12" in r.output
    r = runner.invoke(
        cli,
        ["users", "add", "ada", "--role", "viewer", "--password-stdin", "--db", db],
        input="a good long password\n",
    )
    assert r.exit_code != 0 and "already exists" in r.output
    r = runner.invoke(cli, ["users", "list", "--json", "--db", db])
    assert [(u["username"], u["role"]) for u in json.loads(r.output)] == [("ada", "admin"), ("bob", "viewer")]

    r = runner.invoke(
        cli, ["users", "passwd", "bob", "--password-stdin", "--db", db], input="bob's new password\n"
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["users", "set", "bob", "--role", "trader", "--db", db])
    assert r.exit_code == 0 and "role trader" in r.output

    r = runner.invoke(cli, ["apikeys", "create", "bob", "--name", "bot", "--role", "admin", "--db", db])
    assert r.exit_code != 0 and "exceeds" in r.output
    r = runner.invoke(cli, ["apikeys", "create", "bob", "--name", "bot", "--role", "trader", "--db", db])
    assert r.exit_code == 0, r.output
    secret = r.output.split("key (shown once): ")[1].strip()
    r = runner.invoke(cli, ["apikeys", "list", "--json", "--db", db])
    keys = json.loads(r.output)
    assert len(keys) == 1 and keys[0]["owner"] == "bob" and secret not in r.output
    r = runner.invoke(cli, ["apikeys", "revoke", keys[0]["id"], "--db", db])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["apikeys", "list", "--db", db])
    assert "revoked" in r.output
    r = runner.invoke(cli, ["apikeys", "revoke", "ffffffffffff", "--db", db])
    assert r.exit_code != 0 and "no such API key" in r.output

    r = runner.invoke(cli, ["users", "remove", "bob", "--yes", "--db", db])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["users", "remove", "ada", "--yes", "--db", db])
    assert r.exit_code != 0 and "last enabled admin" in r.output
