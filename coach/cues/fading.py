"""Faded feedback: which eligible cues are actually spoken, following the schedule.

Giving feedback on every trial helps performance during practice but hurts retention; reducing
its frequency over practice ("faded" feedback) retains better (Winstein & Schmidt 1990). Gait
retraining for pelvic drop and hip adduction used real-time feedback faded over the last
sessions (Crowell & Davis 2011; Willy et al. 2012). The schedule is in ``[cues.fading]``
(:class:`~coach.config.FadingConfig`); the decision is deterministic: no random numbers.
"""

from __future__ import annotations

import bisect
import math

from coach.config import FadingConfig

_EPS = 1e-9


class FadingSchedule:
    """Decides, per eligible cue, whether it is delivered or withheld.

    ``fraction`` mode: each rule has an accumulator that gains the scheduled fraction at each
    eligible cue and delivers when it reaches one (Bresenham), so after ``n`` eligible cues at a
    constant fraction ``f`` the rule has delivered ``round(n × f)`` of them (±1 across steps).
    ``blocks`` mode: delivered inside feedback blocks, withheld inside probe blocks.

    Args:
        config: the fading schedule.
        n_rules: number of rules (one accumulator each).

    """

    def __init__(self, config: FadingConfig, n_rules: int) -> None:
        self._config = config
        self._n_rules = n_rules
        self._starts_s = [step.from_minute * 60.0 for step in config.steps]
        self._fractions = [step.fraction for step in config.steps]
        self._cycle_s = config.feedback_s + config.probe_s
        self._acc: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Restart the accumulators (a new session)."""
        self._acc = [0.5] * self._n_rules

    def fraction_at(self, t: float) -> float:
        """Scheduled share of feedback in force at session time ``t`` (s), 0 to 1."""
        if self._config.mode == "none":
            return 1.0
        if self._config.mode == "blocks" and not self._fractions:
            return self._config.feedback_s / self._cycle_s
        i = bisect.bisect_right(self._starts_s, t) - 1
        return self._fractions[max(i, 0)]

    def in_feedback_block(self, t: float) -> bool:
        """True when ``t`` (s) falls in a feedback block of the ``blocks`` schedule."""
        cycle_start = math.floor(t / self._cycle_s) * self._cycle_s
        if self._fractions:
            feedback_s = self.fraction_at(cycle_start) * self._cycle_s
        else:
            feedback_s = self._config.feedback_s
        return t - cycle_start < feedback_s

    def deliver(self, rule_index: int, t: float) -> bool:
        """Whether the eligible cue of rule ``rule_index`` at session time ``t`` (s) is spoken."""
        mode = self._config.mode
        if mode == "none":
            return True
        if mode == "blocks":
            return self.in_feedback_block(t)
        acc = self._acc[rule_index] + self.fraction_at(t)
        if acc >= 1.0 - _EPS:
            self._acc[rule_index] = acc - 1.0
            return True
        self._acc[rule_index] = acc
        return False
