"""Shared fixtures: the real recordings in ../shared/data (tests skip cleanly without them)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the public recordings (``sessions/`` and ``truth/``); skips when absent."""
    if not (SHARED_DATA / "sessions").is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA}")
    return SHARED_DATA
