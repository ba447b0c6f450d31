"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsrag.config import data_root as _configured_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data folder (`RSRAG_DATA` or ../shared/data); tests that need it skip without it."""
    root = _configured_data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set RSRAG_DATA)")
    return root


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: bounded schemathesis runs against the API (loopback / in-process)")
