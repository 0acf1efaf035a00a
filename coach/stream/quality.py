"""Quality flags: when the data should not be trusted (the cue engine mutes on them).

Flags are kept as time intervals per sensor location, so a stride can ask which flags were
active during its own stance. Memory is bounded: intervals older than ``keep_s`` before the
newest time are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coach.types import FloatArray, Location, QualityChange, QualityFlag, SampleBlock

#: A sample repeated exactly with a magnitude above these limits is taken as clipped.
SATURATION_ACC_MPS2 = 2.0 * 9.80665 * 0.95
SATURATION_GYR_RADPS = 4.0


@dataclass(slots=True)
class _Interval:
    location: Location
    flag: QualityFlag
    t_start: float
    t_end: float  # inf while open


class QualityTracker:
    """Active quality flags per location over time.

    Args:
        keep_s: how much history to keep, s.

    """

    def __init__(self, keep_s: float = 30.0) -> None:
        self.keep_s = keep_s
        self._intervals: list[_Interval] = []
        self._open: dict[tuple[Location, QualityFlag], _Interval] = {}

    def reset(self) -> None:
        """Drop every flag."""
        self._intervals.clear()
        self._open.clear()

    def add(self, location: Location, flag: QualityFlag, t_start: float, t_end: float) -> None:
        """Record a flag that was active from ``t_start`` to ``t_end`` (s)."""
        self._intervals.append(_Interval(location, flag, t_start, t_end))

    def set_active(
        self, location: Location, flag: QualityFlag, active: bool, t: float
    ) -> QualityChange | None:
        """Raise or clear an open-ended flag at time ``t``; returns the change, if any."""
        key = (location, flag)
        if active and key not in self._open:
            interval = _Interval(location, flag, t, np.inf)
            self._open[key] = interval
            self._intervals.append(interval)
            return QualityChange(t, location, flag, True)
        if not active and key in self._open:
            self._open.pop(key).t_end = t
            return QualityChange(t, location, flag, False)
        return None

    def is_active(self, location: Location, flag: QualityFlag) -> bool:
        """Whether an open-ended flag is currently raised."""
        return (location, flag) in self._open

    def flags_between(
        self, t_start: float, t_end: float, locations: frozenset[Location] | None = None
    ) -> frozenset[str]:
        """Names of the flags active at any time in ``[t_start, t_end]``."""
        return frozenset(
            i.flag.value
            for i in self._intervals
            if i.t_start <= t_end
            and i.t_end >= t_start
            and (locations is None or i.location in locations)
        )

    def prune(self, now: float) -> None:
        """Forget closed intervals that ended more than ``keep_s`` before ``now``."""
        horizon = now - self.keep_s
        self._intervals = [i for i in self._intervals if i.t_end >= horizon]


class SaturationDetector:
    """Find clipped samples: the largest magnitude seen so far, held for three samples.

    A saturating sensor outputs its full-scale value for consecutive samples, and that value is
    the largest the axis ever shows; a genuine large peak does not repeat to the last bit at the
    running maximum. Works whatever the sensor's range (unknown for imported recordings).

    Args:
        check_acc: also check the accelerometer. A shank's contacts come from its gyroscope,
            and its accelerometer clips at impact on many sensors without harming them, so the
            core checks only the gyroscope there.

    """

    def __init__(self, check_acc: bool = True) -> None:
        self.check_acc = check_acc
        self._last: dict[str, FloatArray] = {}
        self._peak: dict[str, FloatArray] = {}

    def reset(self) -> None:
        """Forget the previous sample and the peaks."""
        self._last.clear()
        self._peak.clear()

    def update(self, block: SampleBlock) -> FloatArray:
        """Times (s) of the block's samples that look clipped."""
        if len(block) == 0:
            return np.zeros(0)
        mask = np.zeros(len(block), dtype=bool)
        if self.check_acc or block.gyr is None:
            mask |= self._clipped("acc", block.acc, SATURATION_ACC_MPS2)
        if block.gyr is not None:
            mask |= self._clipped("gyr", block.gyr, SATURATION_GYR_RADPS)
        clipped: FloatArray = block.t[mask]
        return clipped

    def _clipped(self, key: str, values: FloatArray, limit: float) -> np.ndarray:
        """Samples equal to the two before them, at the axis's running peak and above limit."""
        magnitude = np.abs(values)
        previous_peak = self._peak.get(key, np.zeros(3))
        history = np.vstack((self._last.get(key, np.full((2, 3), np.nan)), values))
        self._last[key] = history[-2:].copy()
        block_peak = magnitude.max(axis=0)
        self._peak[key] = np.maximum(previous_peak, block_peak)
        # clipped samples sit at the running peak: a block below it on every axis has none
        if not np.any((block_peak >= limit) & (block_peak >= previous_peak)):
            return np.zeros(values.shape[0], dtype=bool)
        plateau = (values == history[1:-1]) & (values == history[:-2])
        if not plateau.any():
            return np.zeros(values.shape[0], dtype=bool)
        peak = np.maximum.accumulate(np.vstack((previous_peak, magnitude)), axis=0)[1:]
        same = plateau & (magnitude >= limit) & (magnitude >= peak)
        result: np.ndarray = same.any(axis=1)
        return result
