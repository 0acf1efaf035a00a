"""A fixed-capacity buffer of time-stamped rows, for windows over the last seconds."""

from __future__ import annotations

import numpy as np

from coach.types import FloatArray


class TimeRing:
    """The most recent ``capacity`` rows of (t, values...), oldest dropped first.

    Rows live contiguously in a buffer twice the capacity; when it fills up, the newest
    ``capacity`` rows move to its front (amortised O(1) per row). So a time window is a binary
    search and two views, with no copy. Memory is fixed at construction. Rows must be appended
    in increasing time.

    Args:
        capacity: rows kept.
        width: values per row (besides the time).

    """

    def __init__(self, capacity: int, width: int) -> None:
        self._capacity = capacity
        self._t = np.empty(2 * capacity)
        self._v = np.empty((2 * capacity, width))
        self._start = 0
        self._end = 0

    def clear(self) -> None:
        """Drop every row."""
        self._start = self._end = 0

    def extend(self, t: FloatArray, values: FloatArray) -> None:
        """Append rows: ``t`` shape (n,), ``values`` shape (n, width)."""
        n = t.shape[0]
        if n == 0:
            return
        if n >= self._capacity:
            self._t[: self._capacity] = t[-self._capacity :]
            self._v[: self._capacity] = values[-self._capacity :]
            self._start, self._end = 0, self._capacity
            return
        if self._end + n > 2 * self._capacity:
            keep = min(self._end - self._start, self._capacity - n)
            self._t[:keep] = self._t[self._end - keep : self._end]
            self._v[:keep] = self._v[self._end - keep : self._end]
            self._start, self._end = 0, keep
        self._t[self._end : self._end + n] = t
        self._v[self._end : self._end + n] = values
        self._end += n
        self._start = max(self._start, self._end - self._capacity)

    @property
    def last_t(self) -> float:
        """Time of the newest row (NaN when empty)."""
        return float(self._t[self._end - 1]) if self._end > self._start else float("nan")

    def window(self, t_start: float, t_end: float) -> tuple[FloatArray, FloatArray]:
        """Rows with ``t_start <= t <= t_end``, in time order (views: do not modify)."""
        times = self._t[self._start : self._end]
        lo = int(np.searchsorted(times, t_start, side="left"))
        hi = int(np.searchsorted(times, t_end, side="right"))
        return times[lo:hi], self._v[self._start + lo : self._start + hi]
