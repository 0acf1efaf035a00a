"""The cue engine: strides in, short spoken cues out (pure, synchronous, deterministic).

Per stride: mute on doubtful data, feed the baseline, evaluate every rule (see
:mod:`coach.cues.rules`), then pick at most one cue: rules in cooldown wait; within the global
minimum gap nothing is spoken; otherwise the highest priority eligible rule is chosen (one cue
at a time, pelvic drop first: design.md section 7) and the fading schedule
(:mod:`coach.cues.fading`, Winstein & Schmidt 1990) says whether it is spoken or withheld.
Each such choice is a :class:`CueDecision`; per-rule counts are in :attr:`CueEngine.stats`.

Times are the strides' ``t_detected`` (the moment the decision could be made), in session
seconds. No clock is read; state is O(rules × M).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from coach.config import CuesConfig
from coach.cues.baseline import BaselineTracker
from coach.cues.beat import BeatPredictor
from coach.cues.fading import FadingSchedule
from coach.cues.rules import RuleState
from coach.types import STRIDE_METRICS, Cue, Side, Stride

#: Why an eligible rule did or did not speak.
Outcome = Literal["fired", "cooldown", "gap", "priority", "fading"]


@dataclass(frozen=True, slots=True)
class CueDecision:
    """What happened to one eligible rule at one stride.

    Attributes:
        t: decision time (the stride's ``t_detected``), session s.
        rule: rule name.
        side: side of the stride.
        outcome: ``fired`` (spoken), or why not: ``cooldown`` (rule's cooldown_s), ``gap``
            (global min_gap_s), ``priority`` (another rule spoke), ``fading`` (withheld by the
            fading schedule; counts as given for the rule).
        value: the rule's moving value, metric units.
        phrase: the phrase spoken (``fired`` only).

    """

    t: float
    rule: str
    side: Side
    outcome: Outcome
    value: float
    phrase: str | None = None


@dataclass(frozen=True, slots=True)
class RuleStats:
    """Counts for one rule since the last reset.

    Attributes:
        evaluated: strides at which the moving value was computed.
        outside: evaluated strides with the moving value outside the band.
        fired: cues spoken.
        suppressed_by_gap: eligible strides within the global minimum gap.
        suppressed_by_cooldown: eligible strides within the rule's cooldown.
        suppressed_by_fading: eligible cues withheld by the fading schedule.
        suppressed_by_priority: eligible strides at which a higher-priority rule was chosen.
        suppressed_by_mute: strides of the rule's side not evaluated (start of session, quality
            flag, metric missing or implausible, baseline not ready).

    """

    evaluated: int
    outside: int
    fired: int
    suppressed_by_gap: int
    suppressed_by_cooldown: int
    suppressed_by_fading: int
    suppressed_by_priority: int
    suppressed_by_mute: int


class CueEngine:
    """Turns persistent form faults into cues (bandwidth feedback, Sherwood 1988).

    Args:
        config: the validated ``[cues]`` section.
        baseline: athlete-file baseline per metric name, ``(mean, sd)`` in metric units; a
            baseline-relative rule whose metric is absent takes it from the session's first
            ``config.baseline.strides`` unmuted strides.
        output_latency_ms: audio output latency, ms (``AudioConfig.output_latency_ms``).
        beat_aligned: schedule ``play_at`` at the predicted next foot contact minus the
            latency (``AudioConfig.beat_aligned``); otherwise ``play_at`` equals ``t``.

    Raises:
        ValueError: ``baseline`` names an unknown metric or has a negative or non-finite sd.

    """

    def __init__(
        self,
        config: CuesConfig,
        baseline: Mapping[str, tuple[float, float]] | None = None,
        *,
        output_latency_ms: float = 0.0,
        beat_aligned: bool = False,
    ) -> None:
        self._config = config
        self._baseline = dict(_checked_baseline(baseline or {}))
        self._rules = [RuleState(r, i) for i, r in enumerate(config.rules) if r.enabled]
        self._session_metrics = sorted(
            {
                s.rule.metric
                for s in self._rules
                if s.rule.band == "baseline" and s.rule.metric not in self._baseline
            }
        )
        self._tracker = BaselineTracker(self._session_metrics, config.baseline.strides)
        self._fading = FadingSchedule(config.fading, len(config.rules))
        self._mute_on = frozenset(config.mute_on)
        self._beat = BeatPredictor(output_latency_ms / 1000.0) if beat_aligned else None
        self._decisions: list[CueDecision] = []
        self.reset()

    # ----------------------------------------------------------------------------- state

    def reset(self) -> None:
        """Start a new session: forget all running state (athlete-file baseline kept)."""
        self._n_strides = 0
        self._muted_start = 0
        self._muted_quality = 0
        self._last_spoken_t = -math.inf
        self._decisions = []
        self._tracker.reset()
        self._fading.reset()
        if self._beat is not None:
            self._beat.reset()
        for state in self._rules:
            state.reset()
            if state.rule.band == "baseline":
                state.ready = False
                known = self._baseline.get(state.rule.metric)
                if known is not None:
                    state.set_baseline(*known)

    @property
    def stats(self) -> dict[str, RuleStats]:
        """Per enabled rule name, the counts since the last reset."""
        return {
            s.rule.name: RuleStats(
                evaluated=s.evaluated,
                outside=s.outside,
                fired=s.fired,
                suppressed_by_gap=s.suppressed_by_gap,
                suppressed_by_cooldown=s.suppressed_by_cooldown,
                suppressed_by_fading=s.suppressed_by_fading,
                suppressed_by_priority=s.suppressed_by_priority,
                suppressed_by_mute=s.suppressed_by_mute,
            )
            for s in self._rules
        }

    @property
    def strides_seen(self) -> int:
        """Strides received since the last reset."""
        return self._n_strides

    @property
    def strides_muted(self) -> tuple[int, int]:
        """Strides muted (at the start, for a quality flag) since the last reset."""
        return self._muted_start, self._muted_quality

    @property
    def last_decisions(self) -> list[CueDecision]:
        """Decisions made during the latest :meth:`update` call, in order."""
        return list(self._decisions)

    def baseline(self, metric: str) -> tuple[float, float] | None:
        """The ``(mean, sd)`` baseline in use for ``metric``, or None when not (yet) known."""
        if metric in self._baseline:
            return self._baseline[metric]
        if metric in self._session_metrics and self._tracker.is_ready(metric):
            return self._tracker.result(metric)
        return None

    def band(self, rule: str) -> tuple[float, float] | None:
        """Current ``(low, high)`` band of an enabled rule (±inf unbounded), None if not ready."""
        for state in self._rules:
            if state.rule.name == rule:
                return state.band if state.ready else None
        raise KeyError(rule)

    # ----------------------------------------------------------------------------- update

    def update(self, strides: Sequence[Stride]) -> list[Cue]:
        """Process strides in order; return the cues decided (at most one per stride)."""
        self._decisions = []
        cues: list[Cue] = []
        if not self._config.enabled:
            self._n_strides += len(strides)
            return cues
        for stride in strides:
            cue = self._step(stride)
            if cue is not None:
                cues.append(cue)
        return cues

    def _step(self, stride: Stride) -> Cue | None:
        self._n_strides += 1
        if self._beat is not None:
            self._beat.observe(stride)
        rules = self._rules
        if self._n_strides <= self._config.mute_first_strides:
            self._muted_start += 1
            self._mute_all(stride)
            return None
        if stride.quality and not self._mute_on.isdisjoint(stride.quality):
            self._muted_quality += 1
            self._mute_all(stride)
            for state in rules:
                state.clear()
            return None
        if self._tracker.pending:
            for metric in self._tracker.add(stride):
                mean_sd = self._tracker.result(metric)
                for state in rules:
                    if state.rule.metric == metric and state.rule.band == "baseline":
                        state.set_baseline(*mean_sd)
        t = stride.t_detected
        side = stride.side
        eligible: list[RuleState] = []
        for state in rules:
            if state.side is not None and side is not state.side:
                continue
            value = state.metric_of(stride)
            if value is None:
                state.suppressed_by_mute += 1
                state.clear()
                continue
            if not state.ready or not state.accepts(value):
                state.suppressed_by_mute += 1
                continue
            if state.evaluate(value, t):
                eligible.append(state)
        if not eligible:
            return None
        return self._choose(eligible, stride, t)

    def _mute_all(self, stride: Stride) -> None:
        for state in self._rules:
            if state.side is None or stride.side is state.side:
                state.suppressed_by_mute += 1

    def _choose(self, eligible: list[RuleState], stride: Stride, t: float) -> Cue | None:
        decisions = self._decisions
        side = stride.side
        candidates: list[RuleState] = []
        for state in eligible:
            if state.in_cooldown(t):
                state.suppressed_by_cooldown += 1
                decisions.append(CueDecision(t, state.rule.name, side, "cooldown", state.value))
            else:
                candidates.append(state)
        if not candidates:
            return None
        if t - self._last_spoken_t < self._config.min_gap_s:
            for state in candidates:
                state.suppressed_by_gap += 1
                decisions.append(CueDecision(t, state.rule.name, side, "gap", state.value))
            return None
        winner = max(candidates, key=lambda s: (s.rule.priority, -s.index))
        for state in candidates:
            if state is not winner:
                state.suppressed_by_priority += 1
                decisions.append(CueDecision(t, state.rule.name, side, "priority", state.value))
        winner.consume(t)
        if not self._fading.deliver(winner.index, t):
            winner.suppressed_by_fading += 1
            decisions.append(CueDecision(t, winner.rule.name, side, "fading", winner.value))
            return None
        phrase = winner.next_phrase()
        winner.fired += 1
        self._last_spoken_t = t
        decisions.append(CueDecision(t, winner.rule.name, side, "fired", winner.value, phrase))
        play_at = t if self._beat is None else self._beat.play_at(stride, t)
        return Cue(t=t, rule=winner.rule.name, phrase=phrase, side=side, play_at=play_at)


@dataclass(frozen=True, slots=True)
class CueRun:
    """Result of :func:`run_cues` over a whole list of strides."""

    cues: list[Cue]
    decisions: list[CueDecision]
    stats: dict[str, RuleStats]


def run_cues(
    config: CuesConfig,
    strides: Sequence[Stride],
    baseline: Mapping[str, tuple[float, float]] | None = None,
    *,
    output_latency_ms: float = 0.0,
    beat_aligned: bool = False,
) -> CueRun:
    """Run a fresh engine over a session's strides (e.g. one point of a threshold sweep).

    The strides are fed in one call, so the cost is the per-stride cost of the engine only
    (a few µs per rule); the detection core is not re-run.
    """
    engine = CueEngine(
        config, baseline, output_latency_ms=output_latency_ms, beat_aligned=beat_aligned
    )
    cues = engine.update(strides)
    return CueRun(cues=cues, decisions=engine.last_decisions, stats=engine.stats)


def _checked_baseline(
    baseline: Mapping[str, tuple[float, float]],
) -> Iterable[tuple[str, tuple[float, float]]]:
    for metric, (mean, sd) in baseline.items():
        if metric not in STRIDE_METRICS:
            raise ValueError(
                f"baseline: unknown metric {metric!r} (allowed: {', '.join(STRIDE_METRICS)})"
            )
        if not (math.isfinite(mean) and math.isfinite(sd)) or sd < 0.0:
            raise ValueError(f"baseline.{metric}: need a finite mean and sd >= 0, got {mean}, {sd}")
        yield metric, (float(mean), float(sd))
