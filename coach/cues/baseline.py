"""The runner's baseline: mean and sd of a metric over the first steady strides of a session.

Bandwidth feedback works best when the band is set from the runner's own habitual value rather
than a population norm (bandwidth KR: Sherwood 1988; Lee & Carnahan 1990): a rule with
``band = "baseline"`` cues departures from it. The baseline comes either from an athlete file
(given to the engine) or from the first ``strides`` unmuted strides of the session.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from coach.types import Stride


class _Welford:
    """Running mean and variance (Welford 1962), O(1) memory."""

    __slots__ = ("count", "m2", "mean")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def sd(self) -> float:
        """Sample standard deviation (0 with fewer than two values)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


class BaselineTracker:
    """Collects mean and sd of some metrics over the first ``n_strides`` strides carrying them.

    Args:
        metrics: stride metric names (fields of :class:`~coach.types.Stride`) to collect.
        n_strides: how many strides with a measured value make a baseline, per metric.

    """

    def __init__(self, metrics: Iterable[str], n_strides: int) -> None:
        self._n = n_strides
        self._metrics = tuple(sorted(set(metrics)))
        self._acc: dict[str, _Welford] = {}
        self._pending: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything collected."""
        self._acc = {m: _Welford() for m in self._metrics}
        self._pending = list(self._metrics)

    @property
    def pending(self) -> bool:
        """True while some metric still lacks its baseline."""
        return bool(self._pending)

    def is_ready(self, metric: str) -> bool:
        """True once ``metric`` (one of the tracked metrics) has its baseline."""
        return metric in self._acc and metric not in self._pending

    def add(self, stride: Stride) -> list[str]:
        """Add one (unmuted) stride; return the metrics whose baseline became ready with it."""
        ready: list[str] = []
        for metric in self._pending:
            value = getattr(stride, metric)
            if value is None:
                continue
            acc = self._acc[metric]
            acc.add(float(value))
            if acc.count >= self._n:
                ready.append(metric)
        if ready:
            self._pending = [m for m in self._pending if m not in ready]
        return ready

    def result(self, metric: str) -> tuple[float, float]:
        """Mean and sample sd of ``metric`` so far (units of the metric)."""
        acc = self._acc[metric]
        return acc.mean, acc.sd
