"""Shared fixtures: tiny corpora generated in each corpus's real layout and file naming."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import EMODB_2S, RAVDESS_16K, write_ravdess


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
