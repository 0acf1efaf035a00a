"""Replay sources: recorded sessions read back for the same pipeline as a live run.

For now: CSV session folders (design.md section 4), with an honest summary of what they hold.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.sources.csv_folder import CsvSession, read_session
from coach.types import Location, SampleBlock

#: A step in ``t`` longer than this many nominal sample periods counts as a gap.
GAP_PERIODS = 1.5


@dataclass(frozen=True)
class SensorSummary:
    """What one sensor's recording holds.

    Attributes:
        location: where the sensor was worn.
        samples: number of samples.
        start_s: first sample time, s.
        duration_s: last minus first sample time, s.
        rate_hz: nominal sample rate (1 / median sample interval), Hz.
        has_gyro: whether angular rate was recorded.
        gaps: number of steps in ``t`` longer than 1.5 nominal periods.
        missing_samples: samples the gaps would have held at the nominal rate.

    """

    location: Location
    samples: int
    start_s: float
    duration_s: float
    rate_hz: float
    has_gyro: bool
    gaps: int
    missing_samples: int


def nominal_rate_hz(t: np.ndarray) -> float:
    """Nominal sample rate of a time vector: 1 / median interval, Hz (0 for < 2 samples)."""
    if t.shape[0] < 2:
        return 0.0
    return float(1.0 / np.median(np.diff(t)))


def summarize_block(block: SampleBlock) -> SensorSummary:
    """Summarise one sensor's whole recording."""
    rate = nominal_rate_hz(block.t)
    steps = np.diff(block.t)
    period = 1.0 / rate if rate > 0 else 0.0
    long_steps = steps[steps > GAP_PERIODS * period] if rate > 0 else steps[:0]
    missing = int(np.sum(np.round(long_steps / period) - 1)) if rate > 0 else 0
    return SensorSummary(
        location=block.location,
        samples=len(block),
        start_s=float(block.t[0]),
        duration_s=float(block.t[-1] - block.t[0]),
        rate_hz=rate,
        has_gyro=block.has_gyro,
        gaps=int(long_steps.size),
        missing_samples=missing,
    )


def load_csv_session(path: Path | str) -> CsvSession:
    """Read a CSV session folder for replay (see :func:`coach.sources.csv_folder.read_session`)."""
    return read_session(path)


def iter_blocks(session: CsvSession, block_s: float = 1.0) -> list[SampleBlock]:
    """Cut a session into blocks of ``block_s`` seconds, interleaved by time like a live stream.

    Blocks are ordered by their last sample time, so every sensor advances together.
    """
    edges_by_location = {}
    for location, block in session.blocks.items():
        start = float(block.t[0])
        bins = np.floor((block.t - start) / block_s).astype(np.int64)
        cuts = np.flatnonzero(np.diff(bins)) + 1
        edges_by_location[location] = np.concatenate(([0], cuts, [len(block)]))
    pieces: list[SampleBlock] = []
    for location, edges in edges_by_location.items():
        block = session.blocks[location]
        pieces.extend(block.slice(int(a), int(b)) for a, b in itertools.pairwise(edges))
    pieces.sort(key=lambda piece: (float(piece.t[-1]), piece.location.value))
    return pieces
