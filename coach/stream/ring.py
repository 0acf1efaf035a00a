"""A fixed-capacity ring buffer of time-stamped rows, for windows over the last seconds."""

from __future__ import annotations

import numpy as np

from coach.types import FloatArray


class TimeRing:
    """The most recent ``capacity`` rows of (t, values...), oldest dropped first.

    Memory is fixed at construction: it never grows with session length.

    Args:
        capacity: rows kept.
        width: values per row (besides the time).

    """

    def __init__(self, capacity: int, width: int) -> None:
        self._t = np.full(capacity, np.nan)
        self._v = np.full((capacity, width), np.nan)
        self._capacity = capacity
        self._count = 0  # rows ever written

    def clear(self) -> None:
        """Drop every row."""
        self._t[:] = np.nan
        self._count = 0

    def extend(self, t: FloatArray, values: FloatArray) -> None:
        """Append rows: ``t`` shape (n,), ``values`` shape (n, width)."""
        n = t.shape[0]
        if n == 0:
            return
        if n >= self._capacity:
            t, values, start = t[-self._capacity :], values[-self._capacity :], self._count + n
            self._count = start - self._capacity
            n = self._capacity
        positions = (self._count + np.arange(n)) % self._capacity
        self._t[positions] = t
        self._v[positions] = values
        self._count += n

    @property
    def last_t(self) -> float:
        """Time of the newest row (NaN when empty)."""
        if self._count == 0:
            return float("nan")
        return float(self._t[(self._count - 1) % self._capacity])

    def window(self, t_start: float, t_end: float) -> tuple[FloatArray, FloatArray]:
        """Rows with ``t_start <= t <= t_end``, in time order."""
        kept = min(self._count, self._capacity)
        order = (self._count - kept + np.arange(kept)) % self._capacity
        t = self._t[order]
        mask = (t >= t_start) & (t <= t_end)
        return t[mask], self._v[order][mask]
