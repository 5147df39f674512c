"""Shared fixtures: tiny corpora generated in each corpus's real layout and file naming."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .helpers import EMODB_2S, RAVDESS_16K, write_ravdess


def pytest_configure(config) -> None:
    """Under pytest-xdist (``-n N``) each worker takes its share of the cores for torch's
    threads, so N workers do not each start a thread per core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def ravdess_root(tmp_path: Path) -> Path:
    return write_ravdess(tmp_path / "ravdess")


@pytest.fixture
def real_ravdess() -> Path:
    if not (RAVDESS_16K / "Actor_01").is_dir():
        pytest.skip(f"real RAVDESS not found at {RAVDESS_16K}")
    return RAVDESS_16K


@pytest.fixture
def real_emodb() -> Path:
    if not (EMODB_2S / "wav").is_dir():
        pytest.skip(f"real EmoDB not found at {EMODB_2S}")
    return EMODB_2S


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch) -> None:
    """Every test gets its own cache root, so none reads or fills the user's ~/.cache/ser."""
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path_factory.mktemp("ser-cache")))
