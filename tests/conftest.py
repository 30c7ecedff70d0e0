"""Shared fixtures: MovieLens-100K seeded offline from ../shared when the checkout has none."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ML100K = ROOT.parent / "shared" / "data" / "ml-100k"


def _seed_ml100k() -> Path:
    target = ROOT / "data" / "ml-100k"
    if not (target / "u.data").is_file() and SHARED_ML100K.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for f in SHARED_ML100K.iterdir():
            shutil.copy2(f, target / f.name)
    return target


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The verified, extracted ml-100k folder (seeded from ../shared, never downloaded in tests)."""
    folder = _seed_ml100k()
    if not (folder / "u.data").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must test on real MovieLens: .ci/run seeds data/ml-100k from ../shared/data/ml-100k")
        pytest.skip("MovieLens-100K not available offline: run `make data` or place it in data/ml-100k")
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to open a network connection."""
    import socket
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
