"""Shared pytest fixtures."""

from __future__ import annotations

import os
import uuid
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on loopback (tests/s3_server.py): the one CI started
    (`RSRAG_TEST_S3_ENDPOINT`), else one started for this test session."""
    from s3_server import S3Server, start_seaweedfs

    endpoint = os.environ.get("RSRAG_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(endpoint, None)
        return
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_root(s3_server, monkeypatch, request) -> str:
    """A fresh `s3://` indexes root on the test server, with the AWS variables pointing at it."""
    from s3_server import BUCKET

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{BUCKET}/{request.node.name}-{uuid.uuid4().hex[:8]}"
