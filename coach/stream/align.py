"""Time alignment: put every sensor on one uniform session-time grid.

Each sensor's samples arrive with session times that carry the sensor's clock drift, arrival
jitter already smoothed by the decoder, and holes where packets were lost. The detectors want
uniform sampling, so each sensor is linearly interpolated onto the grid ``t_k = k / rate_hz``
(the same grid for every sensor of that rate). Holes up to ``max_fill_s`` are bridged by the
interpolation and counted; longer holes stay gaps: no grid sample is made inside them, so the
next block starts with a time jump that the detectors see, and a gap is reported.

The output depends only on the samples, never on how they were cut into blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coach.types import FloatArray, Location, SampleBlock

#: Tolerance for "this sample lies on a grid point", in grid periods.
_GRID_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Gap:
    """A hole in one sensor's samples longer than the bridgeable limit.

    Attributes:
        location: the sensor.
        t_start: last sample time before the hole, s.
        t_end: first sample time after it, s.

    """

    location: Location
    t_start: float
    t_end: float


@dataclass(slots=True)
class AlignStats:
    """Running counts of one sensor's alignment."""

    samples_in: int = 0
    samples_out: int = 0
    bridged_holes: int = 0
    gaps: int = 0


class UniformResampler:
    """Resample one sensor onto the uniform grid ``k / rate_hz`` (linear interpolation).

    Args:
        location: the sensor's location (copied to the output blocks).
        rate_hz: output sample rate, Hz (normally the sensor's nominal rate).
        max_fill_s: longest hole between two samples that is bridged, s.

    """

    def __init__(self, location: Location, rate_hz: float, max_fill_s: float) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        self.location = location
        self.rate_hz = float(rate_hz)
        self.max_fill_s = float(max(max_fill_s, 1.0 / rate_hz))
        self.stats = AlignStats()
        self._last_t: float | None = None
        self._last_values: FloatArray = np.zeros(0)
        self._next_k = 0

    def reset(self) -> None:
        """Forget the running state (the next block starts a new stream)."""
        self.__init__(self.location, self.rate_hz, self.max_fill_s)  # type: ignore[misc]

    def update(self, block: SampleBlock) -> tuple[SampleBlock, list[Gap]]:
        """Resample a block; returns the grid samples now known and the gaps found."""
        n = len(block)
        self.stats.samples_in += n
        with_gyro = block.gyr is not None
        if n == 0:
            return self._empty(with_gyro), []
        values = block.acc if block.gyr is None else np.hstack((block.acc, block.gyr))
        if self._last_t is None or self._last_values.shape[0] != values.shape[1]:
            if self._last_t is None:
                self._next_k = math.ceil(block.t[0] * self.rate_hz - _GRID_TOLERANCE)
            ts, channels = block.t, values
        else:
            ts = np.concatenate(((self._last_t,), block.t))
            channels = np.vstack((self._last_values, values))
        self._last_t = float(block.t[-1])
        self._last_values = values[-1].copy()

        gaps: list[Gap] = []
        steps = np.diff(ts)
        long_holes = np.zeros(0, dtype=np.int64)
        if steps.shape[0] and steps.max() > 1.5 / self.rate_hz:
            long_holes = np.flatnonzero(steps > self.max_fill_s)
            holes = int(np.count_nonzero(steps > 1.5 / self.rate_hz))
            self.stats.bridged_holes += holes - long_holes.size
            self.stats.gaps += long_holes.size
            gaps = [Gap(self.location, float(ts[i]), float(ts[i + 1])) for i in long_holes]

        last_k = math.floor(ts[-1] * self.rate_hz + _GRID_TOLERANCE)
        if last_k < self._next_k:
            return self._empty(with_gyro), gaps
        grid_t = np.arange(self._next_k, last_k + 1) / self.rate_hz
        self._next_k = last_k + 1
        if ts.shape[0] == 1:
            keep = np.abs(grid_t - ts[0]) * self.rate_hz <= _GRID_TOLERANCE
            grid_t = grid_t[keep]
            out = np.repeat(channels[:1], grid_t.shape[0], axis=0)
        else:
            idx = np.clip(np.searchsorted(ts, grid_t, side="right") - 1, 0, ts.shape[0] - 2)
            weight = np.clip((grid_t - ts[idx]) / (ts[idx + 1] - ts[idx]), 0.0, 1.0)
            lower = channels[idx]
            out = lower + (channels[idx + 1] - lower) * weight[:, None]
            if long_holes.size:
                keep = steps[idx] <= self.max_fill_s
                grid_t, out = grid_t[keep], out[keep]
        self.stats.samples_out += grid_t.shape[0]
        gyr_out = np.ascontiguousarray(out[:, 3:]) if with_gyro else None
        return SampleBlock(self.location, grid_t, np.ascontiguousarray(out[:, :3]), gyr_out), gaps

    def _empty(self, with_gyro: bool) -> SampleBlock:
        return SampleBlock(
            self.location, np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)) if with_gyro else None
        )
