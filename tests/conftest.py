"""Shared fixtures. Tests use real parts: real SQLite files, real subprocesses, real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stratkernel.core.data import BarSeries
from stratkernel.testing import make_series

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def series() -> BarSeries:
    return make_series(3000, seed=3)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STRATKERNEL_* settings leak into a test from the developer's shell."""
    for key in list(os.environ):
        if key.startswith("STRATKERNEL_"):
            monkeypatch.delenv(key, raising=False)
