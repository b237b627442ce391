"""``stratkernel users ...`` and ``stratkernel apikeys ...``: account and key management from a shell.

Exposed as :data:`users_group` and :data:`apikeys_group` for the main CLI to attach. Both act directly
on the SQLite database (``--db``, env ``STRATKERNEL_DB``, default ``.stratkernel/stratkernel.db``),
so they work whether or not the API is running. Passwords are read from a prompt (never echoed) or
from stdin with ``--password-stdin``, never from an argument, so they do not land in shell history
or ``ps`` output; a generated password or a new API key is printed exactly once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

from ..core.errors import AuthError, StoreError, ValidationError
from .config import DEFAULT_DB_PATH
from .users import ROLES, UserStore, check_password, generate_password

T = TypeVar("T")

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STRATKERNEL_DB",
    default=DEFAULT_DB_PATH,
    show_default=True,
    help="SQLite database (env STRATKERNEL_DB)",
)


def _run(db_path: Path, action: Callable[[UserStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with UserStore(db_path) as store:
            return await action(store)

    try:
        return asyncio.run(main())
    except (ValidationError, AuthError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


def _when(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _read_password(password_stdin: bool, confirm: bool = True) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    try:
        return check_password(password)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("users")
def users_group() -> None:
    """Manage API users (viewer, trader, admin)."""


@users_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="what the user may do")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
@click.option("--generate", is_flag=True, help="generate a random password and print it once")
@db_option
def add_user(username: str, role: str, password_stdin: bool, generate: bool, db_path: Path) -> None:
    """Create USERNAME with ROLE. Prompts for a password unless --password-stdin or --generate."""
    if password_stdin and generate:
        raise click.UsageError("--password-stdin and --generate exclude each other")
    password = generate_password() if generate else _read_password(password_stdin)
    _run(db_path, lambda s: s.add_user(username, password, role, actor="cli"))
    click.echo(f"user {username} added with role {role}")
    if generate:
        click.echo(f"password (shown once): {password}")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@db_option
def list_users(as_json: bool, db_path: Path) -> None:
    """List users with role and status."""
    users = _run(db_path, lambda s: s.list_users())
    if as_json:
        click.echo(json.dumps([u.as_dict() for u in users], indent=2))
        return
    if not users:
        click.echo("no users")
        return
    click.echo(f"{'USERNAME':<24} {'ROLE':<8} {'STATUS':<9} CREATED")
    for u in users:
        status = "disabled" if u.disabled else "active"
        click.echo(f"{u.username:<24} {u.role:<8} {status:<9} {_when(u.created_at)}")


@users_group.command("remove")
@click.argument("username")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@db_option
def remove_user(username: str, yes: bool, db_path: Path) -> None:
    """Delete USERNAME, its sessions and its API keys."""
    if not yes:
        click.confirm(f"Remove user {username} and all its sessions and API keys?", abort=True)
    _run(db_path, lambda s: s.remove_user(username, actor="cli"))
    click.echo(f"user {username} removed")


@users_group.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="read the new password from the first line of stdin")
@db_option
def passwd(username: str, password_stdin: bool, db_path: Path) -> None:
    """Set USERNAME's password; all its sessions are revoked."""
    password = _read_password(password_stdin)
    _run(db_path, lambda s: s.set_password(username, password, actor="cli"))
    click.echo(f"password of {username} changed; its sessions were revoked")


@users_group.command("set")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default=None)
@click.option("--disable/--enable", "disabled", default=None)
@db_option
def set_user(username: str, role: str | None, disabled: bool | None, db_path: Path) -> None:
    """Change USERNAME's role or enable/disable it."""
    if role is None and disabled is None:
        raise click.UsageError("give --role and/or --disable/--enable")
    user = _run(db_path, lambda s: s.update_user(username, role=role, disabled=disabled, actor="cli"))
    click.echo(f"user {user.username}: role {user.role}, {'disabled' if user.disabled else 'active'}")


@click.group("apikeys")
def apikeys_group() -> None:
    """Manage API keys for programs (hashed at rest, shown once)."""


@apikeys_group.command("create")
@click.argument("owner")
@click.option("--name", required=True, help="what the key is for")
@click.option("--role", type=click.Choice(ROLES), required=True, help="at most the owner's role")
@db_option
def create_key(owner: str, name: str, role: str, db_path: Path) -> None:
    """Create an API key acting as OWNER; prints the key once."""
    key, secret = _run(db_path, lambda s: s.create_api_key(owner, name, role, actor="cli"))
    click.echo(f"API key {key.id} for {owner} ({role})")
    click.echo(f"key (shown once): {secret}")


@apikeys_group.command("list")
@click.option("--owner", default=None, help="only this user's keys")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@db_option
def list_keys(owner: str | None, as_json: bool, db_path: Path) -> None:
    """List API keys (never the keys themselves)."""
    keys = _run(db_path, lambda s: s.list_api_keys(owner))
    if as_json:
        click.echo(json.dumps([k.as_dict() for k in keys], indent=2))
        return
    if not keys:
        click.echo("no API keys")
        return
    click.echo(f"{'ID':<14} {'OWNER':<20} {'ROLE':<8} {'STATUS':<8} {'LAST USED':<21} NAME")
    for k in keys:
        status = "revoked" if k.revoked else "active"
        click.echo(f"{k.id:<14} {k.owner:<20} {k.role:<8} {status:<8} {_when(k.last_used_at):<21} {k.name}")


@apikeys_group.command("revoke")
@click.argument("key_id")
@db_option
def revoke_key(key_id: str, db_path: Path) -> None:
    """Revoke API key KEY_ID."""
    _run(db_path, lambda s: s.revoke_api_key(key_id, actor="cli"))
    click.echo(f"API key {key_id} revoked")
