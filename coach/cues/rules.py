"""One cue rule's running state: moving value, band, persistence and hysteresis.

Bandwidth feedback (Sherwood 1988; Lee & Carnahan 1990): no feedback while performance stays
inside a band of acceptable values; feedback only when it leaves the band. Here the performance
is the k-stride moving mean or median of one metric; a rule becomes *eligible* when that value
is outside the band at the current stride and at ``persistence_n`` of the last
``persistence_m`` evaluated strides, and, after a cue, only again once the value came back
inside the band by ``hysteresis`` (or ``repeat_s`` passed). State is O(window + M).
"""

from __future__ import annotations

import math
from collections import deque
from operator import attrgetter
from typing import Any

from coach.config import CueRuleConfig
from coach.types import Side

_INF = math.inf


class RuleState:
    """Running state of one :class:`~coach.config.CueRuleConfig`.

    Args:
        rule: the validated rule.
        index: position of the rule in the config (ties of priority go to the lower index).

    """

    __slots__ = (
        "_flags",
        "_high",
        "_low",
        "_median",
        "_valid_max",
        "_valid_min",
        "_window",
        "armed",
        "evaluated",
        "fired",
        "index",
        "last_decision_t",
        "metric_of",
        "n_outside",
        "outside",
        "phrase_index",
        "ready",
        "rule",
        "side",
        "suppressed_by_cooldown",
        "suppressed_by_fading",
        "suppressed_by_gap",
        "suppressed_by_mute",
        "suppressed_by_priority",
        "value",
    )

    def __init__(self, rule: CueRuleConfig, index: int) -> None:
        self.rule = rule
        self.index = index
        self.metric_of: Any = attrgetter(rule.metric)
        self.side: Side | None = None if rule.side == "either" else Side(rule.side)
        self._median = rule.statistic == "median"
        self._valid_min = -_INF if rule.valid_min is None else rule.valid_min
        self._valid_max = _INF if rule.valid_max is None else rule.valid_max
        self._window: deque[float] = deque(maxlen=rule.window_strides)
        self._flags: deque[bool] = deque(maxlen=rule.persistence_m)
        self._low = -_INF
        self._high = _INF
        self.ready = False
        if rule.band == "absolute":
            self.set_band(rule.low, rule.high)
        self.reset()

    def reset(self) -> None:
        """Forget the session (the band of an absolute or athlete-file rule is kept)."""
        self.clear()
        self.armed = True
        self.last_decision_t = -_INF
        self.phrase_index = 0
        self.value = math.nan
        self.evaluated = self.outside = self.fired = 0
        self.suppressed_by_gap = self.suppressed_by_cooldown = self.suppressed_by_fading = 0
        self.suppressed_by_priority = self.suppressed_by_mute = 0

    def clear(self) -> None:
        """Drop the moving window and persistence history (after doubtful data)."""
        self._window.clear()
        self._flags.clear()
        self.n_outside = 0

    def set_band(self, low: float | None, high: float | None) -> None:
        """Set the band limits in metric units (None: unbounded on that side)."""
        self._low = -_INF if low is None else low
        self._high = _INF if high is None else high
        self.ready = True

    def set_baseline(self, mean: float, sd: float) -> None:
        """Set a baseline band from the runner's mean and sd (metric units)."""
        rule = self.rule
        width = rule.baseline_sd * sd + rule.baseline_delta
        low = mean - width if rule.direction in ("below", "both") else None
        high = mean + width if rule.direction in ("above", "both") else None
        self.set_band(low, high)

    @property
    def band(self) -> tuple[float, float]:
        """Current (low, high) limits; ±inf where unbounded."""
        return self._low, self._high

    def accepts(self, value: float) -> bool:
        """True when ``value`` lies in the rule's plausible range (valid_min..valid_max)."""
        return self._valid_min <= value <= self._valid_max

    def evaluate(self, value: float, t: float) -> bool:
        """Add one stride's value; return True when the rule is eligible to cue at time ``t``.

        Nothing is evaluated until the window holds ``window_strides`` values.
        """
        window = self._window
        window.append(value)
        k = len(window)
        if k < self.rule.window_strides:
            return False
        if self._median:
            ordered = sorted(window)
            mid = k // 2
            moving = ordered[mid] if k % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
        else:
            moving = sum(window) / k
        self.value = moving
        self.evaluated += 1
        low, high = self._low, self._high
        outside = moving > high or moving < low
        flags = self._flags
        if not self.armed:
            margin = self.rule.hysteresis
            if low + margin <= moving <= high - margin:
                self.armed = True
                flags.clear()
                self.n_outside = 0
        if len(flags) == flags.maxlen and flags[0]:
            self.n_outside -= 1
        flags.append(outside)
        if not outside:
            return False
        self.outside += 1
        self.n_outside += 1
        if self.n_outside < self.rule.persistence_n:
            return False
        if self.armed:
            return True
        repeat = self.rule.repeat_s
        return repeat is not None and t - self.last_decision_t >= repeat

    def in_cooldown(self, t: float) -> bool:
        """True when ``t`` (s) is within ``cooldown_s`` of the rule's last decision."""
        return t - self.last_decision_t < self.rule.cooldown_s

    def consume(self, t: float) -> None:
        """The rule's cue was given (or withheld by fading) at ``t``: disarm, start cooldown."""
        self.armed = False
        self.last_decision_t = t

    def next_phrase(self) -> str:
        """The phrase to speak now; phrases rotate in order."""
        phrases = self.rule.phrases
        phrase = phrases[self.phrase_index % len(phrases)]
        self.phrase_index += 1
        return phrase
