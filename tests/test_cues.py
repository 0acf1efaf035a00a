"""Cue engine: persistence, hysteresis, pacing, priority, fading, muting, baselines, config."""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coach.config import (
    CueRuleConfig,
    CuesConfig,
    FadingConfig,
    QualityFlagName,
    load_config,
    parse_config,
)
from coach.cues import CueEngine, run_cues
from coach.cues.beat import predict_play_at
from coach.errors import ConfigError
from coach.types import QualityFlag, Side, Stride

DELAY_S = 0.25  # t_detected - t of the synthetic strides (exact in binary)


def rule(**overrides: Any) -> CueRuleConfig:
    """A rule that fires on the first stride above 5 (window 1, persistence 1 of 1)."""
    fields: dict[str, Any] = {
        "name": "r",
        "metric": "pelvic_drop_deg",
        "high": 5.0,
        "window_strides": 1,
        "persistence_n": 1,
        "persistence_m": 1,
        "cooldown_s": 0.0,
        "phrases": ["cue"],
    }
    fields.update(overrides)
    # None removes a field (e.g. high=None for a low-only or baseline rule)
    return CueRuleConfig.model_validate({k: v for k, v in fields.items() if v is not None})


def cues_config(*rules: CueRuleConfig, **overrides: Any) -> CuesConfig:
    fields: dict[str, Any] = {"min_gap_s": 0.0, "mute_first_strides": 0, "rules": list(rules)}
    fields.update(overrides)
    return CuesConfig.model_validate(fields)


def make_strides(
    step_s: float = 1.0,
    quality: dict[int, frozenset[str]] | None = None,
    sides: Sequence[Side] | None = None,
    **metrics: Sequence[float | None],
) -> list[Stride]:
    """Strides ``step_s`` apart, alternating left/right, with the given metric values."""
    n = len(next(iter(metrics.values())))
    quality = quality or {}
    return [
        Stride(
            t=i * step_s,
            t_detected=i * step_s + DELAY_S,
            side=sides[i] if sides is not None else (Side.LEFT if i % 2 == 0 else Side.RIGHT),
            quality=quality.get(i, frozenset()),
            **{name: values[i] for name, values in metrics.items()},
        )
        for i in range(n)
    ]


def fired_at(config: CuesConfig, strides: list[Stride], **kwargs: Any) -> list[int]:
    """Indices of the strides at which a cue was spoken."""
    by_t = {s.t_detected: i for i, s in enumerate(strides)}
    return [by_t[c.t] for c in run_cues(config, strides, **kwargs).cues]


# ------------------------------------------------------------------------------ persistence

PERSISTENCE_CASES = [
    # (rule fields, values, strides at which a cue is spoken)
    ({"persistence_n": 3, "persistence_m": 3}, [9, 9, 9, 9, 9], [2]),
    ({"persistence_n": 3, "persistence_m": 5}, [9, 0, 9, 0, 9], [4]),
    ({"persistence_n": 3, "persistence_m": 4}, [9, 0, 9, 0, 9, 0, 9], []),
    ({"persistence_n": 2, "persistence_m": 3}, [9, 0, 0, 9, 0, 9], [5]),
    ({"persistence_n": 2, "persistence_m": 3}, [9, 9, 0, 0], [1]),
    # the current stride must be outside too
    ({"persistence_n": 2, "persistence_m": 4}, [9, 9, 0], [1]),
    ({"persistence_n": 3, "persistence_m": 4}, [9, 9, 0, 9], [3]),
    # moving mean of 3 (nothing evaluated until the window is full)
    ({"window_strides": 3}, [9, 0, 0, 9, 9, 9], [4]),
    ({"window_strides": 3}, [9, 9, 9], [2]),
    # moving median of 3 ignores a single spike
    ({"window_strides": 3, "statistic": "median"}, [0, 0, 50, 0, 0, 9, 9], [6]),
    ({"window_strides": 4, "statistic": "median"}, [0, 0, 9, 9, 9], [4]),  # 4.5, then 9
    # a low limit
    ({"high": None, "low": 150.0}, [160, 149, 160], [1]),
]


@pytest.mark.parametrize(("fields", "values", "expected"), PERSISTENCE_CASES)
def test_persistence(fields: dict[str, Any], values: list[float], expected: list[int]) -> None:
    config = cues_config(rule(**fields))
    assert fired_at(config, make_strides(pelvic_drop_deg=values)) == expected


def test_persistence_counts_and_stats() -> None:
    config = cues_config(rule(window_strides=2, persistence_n=2, persistence_m=3))
    result = run_cues(config, make_strides(pelvic_drop_deg=[0, 0, 9, 9, 9, 9]))
    stats = result.stats["r"]
    assert (stats.evaluated, stats.outside, stats.fired) == (5, 3, 1)
    assert [d.outcome for d in result.decisions] == ["fired"]
    assert result.decisions[0].value == pytest.approx(9.0)


# ------------------------------------------------------------------------------ hysteresis

HYSTERESIS_CASES = [
    # must come back below high - hysteresis (4.0) before the next cue
    ({"hysteresis": 1.0}, [6, 4.5, 6, 3.9, 6], [0, 4]),
    ({"hysteresis": 1.0}, [6, 4.0, 6], [0, 2]),
    ({"hysteresis": 0.0}, [6, 4.5, 6, 5.0, 6], [0, 2, 4]),
    # above low + hysteresis (153) for a low limit
    ({"high": None, "low": 150.0, "hysteresis": 3.0}, [140, 152, 140, 153, 140], [0, 4]),
    # no recovery: one cue per episode ...
    ({"hysteresis": 1.0}, [6] * 20, [0]),
    # ... unless repeat_s is set (strides are 1 s apart)
    ({"hysteresis": 1.0, "repeat_s": 5.0}, [6] * 12, [0, 5, 10]),
]


@pytest.mark.parametrize(("fields", "values", "expected"), HYSTERESIS_CASES)
def test_hysteresis(fields: dict[str, Any], values: list[float], expected: list[int]) -> None:
    config = cues_config(rule(**fields))
    assert fired_at(config, make_strides(pelvic_drop_deg=values)) == expected


def test_recovery_needs_fresh_persistence() -> None:
    config = cues_config(rule(persistence_n=3, persistence_m=3, hysteresis=1.0))
    values = [9, 9, 9, 3, 9, 9, 9]
    assert fired_at(config, make_strides(pelvic_drop_deg=values)) == [2, 6]


# ------------------------------------------------------------------------ cooldown and gap

PACING_CASES = [
    # (rule fields, cues fields, values (1 s apart), fired, suppressed (outcome, index))
    ({"cooldown_s": 3.0}, {}, [6, 4] * 5, [0, 4, 8], [("cooldown", 2), ("cooldown", 6)]),
    ({"cooldown_s": 2.0}, {}, [6, 4] * 3, [0, 2, 4], []),
    ({}, {"min_gap_s": 3.0}, [6, 4] * 5, [0, 4, 8], [("gap", 2), ("gap", 6)]),
    ({}, {"min_gap_s": 3.0}, [6, 6, 6, 6], [0], []),
    (
        {"cooldown_s": 5.0},
        {"min_gap_s": 3.0},
        [6, 4] * 4,
        [0, 6],
        [("cooldown", 2), ("cooldown", 4)],
    ),
]


@pytest.mark.parametrize(("rule_fields", "cue_fields", "values", "fired", "held"), PACING_CASES)
def test_cooldown_and_min_gap(
    rule_fields: dict[str, Any],
    cue_fields: dict[str, Any],
    values: list[float],
    fired: list[int],
    held: list[tuple[str, int]],
) -> None:
    config = cues_config(rule(**rule_fields), **cue_fields)
    strides = make_strides(pelvic_drop_deg=values)
    result = run_cues(config, strides)
    index = {s.t_detected: i for i, s in enumerate(strides)}
    assert [index[c.t] for c in result.cues] == fired
    assert [(d.outcome, index[d.t]) for d in result.decisions if d.outcome != "fired"] == held
    stats = result.stats["r"]
    assert stats.suppressed_by_cooldown == sum(1 for o, _ in held if o == "cooldown")
    assert stats.suppressed_by_gap == sum(1 for o, _ in held if o == "gap")


def test_min_gap_across_rules() -> None:
    drop = rule(name="drop")
    rotation = rule(name="rotation", metric="pelvic_rotation_deg", high=15.0)
    config = cues_config(drop, rotation, min_gap_s=4.0)
    strides = make_strides(
        pelvic_drop_deg=[6, 0, 0, 0, 0, 0, 0], pelvic_rotation_deg=[0, 20, 20, 20, 20, 20, 20]
    )
    result = run_cues(config, strides)
    assert [(c.rule, c.t - DELAY_S) for c in result.cues] == [("drop", 0.0), ("rotation", 4.0)]
    assert result.stats["rotation"].suppressed_by_gap == 3


# -------------------------------------------------------------------------------- priority

PRIORITY_CASES = [
    # (priority of drop, priority of rotation, order of cues)
    (100, 10, ["drop", "rotation"]),
    (10, 100, ["rotation", "drop"]),
    (50, 50, ["drop", "rotation"]),  # a tie goes to the earlier rule in the file
]


@pytest.mark.parametrize(("p_drop", "p_rotation", "order"), PRIORITY_CASES)
def test_priority(p_drop: int, p_rotation: int, order: list[str]) -> None:
    drop = rule(name="drop", priority=p_drop, hysteresis=1.0)
    rotation = rule(name="rotation", metric="pelvic_rotation_deg", high=15.0, priority=p_rotation)
    config = cues_config(drop, rotation, min_gap_s=3.0)
    strides = make_strides(pelvic_drop_deg=[9] * 6, pelvic_rotation_deg=[20] * 6)
    result = run_cues(config, strides)
    assert [c.rule for c in result.cues] == order
    assert [c.t - DELAY_S for c in result.cues] == [0.0, 3.0]
    loser = order[1]
    assert result.stats[loser].suppressed_by_priority == 1
    assert result.stats[loser].suppressed_by_gap == 2
    outcomes = [(d.rule, d.outcome) for d in result.decisions if d.t == DELAY_S]
    assert sorted(outcomes) == sorted([(order[0], "fired"), (loser, "priority")])


# ------------------------------------------------------------------------- phrase rotation


@pytest.mark.parametrize(
    ("phrases", "expected"),
    [
        (["a"], ["a", "a", "a"]),
        (["a", "b"], ["a", "b", "a"]),
        (["a", "b", "c"], ["a", "b", "c"]),
    ],
)
def test_phrases_rotate(phrases: list[str], expected: list[str]) -> None:
    config = cues_config(rule(phrases=phrases))
    result = run_cues(config, make_strides(pelvic_drop_deg=[6, 4, 6, 4, 6]))
    assert [c.phrase for c in result.cues] == expected
    assert [d.phrase for d in result.decisions] == expected


def test_phrases_do_not_advance_when_withheld() -> None:
    fading = {"mode": "fraction", "steps": [[0, 0.5]]}
    config = cues_config(rule(phrases=["a", "b"]), fading=fading)
    result = run_cues(config, make_strides(pelvic_drop_deg=[6, 4] * 8))
    assert [c.phrase for c in result.cues] == ["a", "b", "a", "b"]


# ---------------------------------------------------------------------------------- fading


def alternating(n: int) -> list[Stride]:
    """``n`` strides 1 s apart, every other one outside the band (each an eligible cue)."""
    return make_strides(pelvic_drop_deg=[6.0, 4.0] * (n // 2))


FRACTION_SCHEDULES = [
    [[0, 1.0]],
    [[0, 0.5]],
    [[0, 1.0], [5, 0.5], [10, 0.2]],
    [[0, 0.75], [4, 0.3], [8, 0.0], [12, 1.0 / 3.0]],
]


@pytest.mark.parametrize("steps", FRACTION_SCHEDULES)
def test_fading_fraction_follows_schedule(steps: list[list[float]]) -> None:
    config = cues_config(rule(), fading={"mode": "fraction", "steps": steps})
    result = run_cues(config, alternating(16 * 60))
    bounds = [minute * 60.0 for minute, _ in steps] + [math.inf]
    for (_, fraction), start, stop in zip(steps, bounds, bounds[1:], strict=False):
        inside = [d for d in result.decisions if start <= d.t - DELAY_S < stop]
        delivered = sum(d.outcome == "fired" for d in inside)
        withheld = sum(d.outcome == "fading" for d in inside)
        assert delivered + withheld == len(inside) > 0
        # the accumulator carries at most one cue of rounding across a step boundary
        assert abs(delivered - fraction * len(inside)) <= 1.0
    stats = result.stats["r"]
    assert stats.fired == len(result.cues)
    assert stats.fired + stats.suppressed_by_fading == 16 * 60 // 2


BLOCK_CASES = [
    # (fading fields, expected delivered share overall)
    ({"feedback_s": 60.0, "probe_s": 30.0}, 2.0 / 3.0),
    ({"feedback_s": 60.0, "probe_s": 0.0}, 1.0),
    ({"feedback_s": 60.0, "probe_s": 30.0, "steps": [[0, 1.0], [6, 0.5], [12, 0.25]]}, None),
]


@pytest.mark.parametrize(("fields", "share"), BLOCK_CASES)
def test_fading_blocks(fields: dict[str, Any], share: float | None) -> None:
    fading = FadingConfig.model_validate({"mode": "blocks", **fields})
    config = cues_config(rule(), fading=fading)
    result = run_cues(config, alternating(18 * 60))
    cycle = fading.feedback_s + fading.probe_s
    starts = [step.from_minute * 60.0 for step in fading.steps]
    for decision in result.decisions:
        t = decision.t
        cycle_start = math.floor(t / cycle) * cycle
        if fading.steps:
            i = max(j for j, s in enumerate(starts) if s <= cycle_start)
            feedback = fading.steps[i].fraction * cycle
        else:
            feedback = fading.feedback_s
        in_feedback = t - cycle_start < feedback
        assert decision.outcome == ("fired" if in_feedback else "fading")
    if share is not None:
        delivered = sum(d.outcome == "fired" for d in result.decisions)
        assert delivered / len(result.decisions) == pytest.approx(share, abs=0.02)


def test_fading_withheld_cue_counts_as_given_for_the_rule() -> None:
    # withheld: the rule disarms (needs recovery) and starts its cooldown, but not the gap
    fading = {"mode": "blocks", "feedback_s": 10.0, "probe_s": 10.0}
    config = cues_config(rule(hysteresis=1.0), fading=fading)
    strides = make_strides(pelvic_drop_deg=[0.0] * 12 + [9.0] * 20)
    result = run_cues(config, strides)
    assert [d.outcome for d in result.decisions] == ["fading"]
    assert result.cues == []


# ----------------------------------------------------------------------------------- muting


@pytest.mark.parametrize("flag", [f.value for f in QualityFlag if f is not QualityFlag.TURNING])
def test_quality_flags_mute_and_clear_persistence(flag: str) -> None:
    config = cues_config(rule(persistence_n=3, persistence_m=3))
    quality = {i: frozenset({flag}) for i in range(2, 4)}
    strides = make_strides(pelvic_drop_deg=[9.0] * 10, quality=quality)
    # strides 0, 1 build persistence, the flag at 2-3 clears it: 4, 5, 6 build it again
    assert fired_at(config, strides) == [6]


def test_turning_does_not_mute_by_default() -> None:
    quality = {i: frozenset({"turning"}) for i in range(10)}
    strides = make_strides(pelvic_drop_deg=[9.0] * 12, quality=quality)
    assert fired_at(cues_config(rule()), strides) == [0]


@pytest.mark.parametrize(
    ("mute_on", "flags", "fired"),
    [
        (["gap"], {"saturation"}, [0]),
        (["gap"], {"gap"}, [10]),
        ([], {"gap"}, [0]),
        (["gap", "calibrating"], {"low_battery"}, [0]),  # unknown flag names do not mute
    ],
)
def test_mute_on_selects_flags(mute_on: list[str], flags: set[str], fired: list[int]) -> None:
    config = cues_config(rule(), mute_on=mute_on)
    quality = {i: frozenset(flags) for i in range(10)}
    assert fired_at(config, make_strides(pelvic_drop_deg=[9.0] * 12, quality=quality)) == fired


def test_quality_mute_silences_every_rule_and_counts() -> None:
    drop = rule(name="drop")
    rotation = rule(name="rotation", metric="pelvic_rotation_deg", high=15.0)
    config = cues_config(drop, rotation)
    quality = {i: frozenset({"gap"}) for i in range(5)}
    strides = make_strides(pelvic_drop_deg=[9] * 5, pelvic_rotation_deg=[20] * 5, quality=quality)
    engine = CueEngine(config)
    assert engine.update(strides) == []
    assert engine.strides_muted == (0, 5)
    assert all(s.suppressed_by_mute == 5 for s in engine.stats.values())


@pytest.mark.parametrize(("mute_first", "expected"), [(0, 0), (1, 1), (10, 10), (25, 25)])
def test_mute_first_strides(mute_first: int, expected: int) -> None:
    config = cues_config(rule(), mute_first_strides=mute_first)
    strides = make_strides(pelvic_drop_deg=[9.0] * 30)
    assert fired_at(config, strides) == [expected]
    assert run_cues(config, strides).stats["r"].suppressed_by_mute == mute_first


NONE_CASES = [
    # (values, fired): None = the metric is not measured for that stride
    ([None] * 10, []),
    ([9, 9, None, 9, 9, 9], [5]),  # a missing value clears persistence (n=3)
    ([None, None, 9, 9, 9], [4]),
]


@pytest.mark.parametrize(("values", "fired"), NONE_CASES)
def test_none_metric_mutes_the_rule(values: list[float | None], fired: list[int]) -> None:
    config = cues_config(rule(persistence_n=3, persistence_m=3))
    strides = make_strides(pelvic_drop_deg=values)
    assert fired_at(config, strides) == fired
    assert run_cues(config, strides).stats["r"].suppressed_by_mute == values.count(None)


def test_none_metric_does_not_mute_other_rules() -> None:
    drop = rule(name="drop")
    cadence = rule(name="cadence", metric="cadence_spm", high=None, low=155.0)
    config = cues_config(drop, cadence)
    strides = make_strides(pelvic_drop_deg=[None] * 3, cadence_spm=[140.0] * 3)
    assert [c.rule for c in run_cues(config, strides).cues] == ["cadence"]


@pytest.mark.parametrize(("side", "fired"), [("left", [0]), ("right", [1]), ("either", [0])])
def test_side(side: str, fired: list[int]) -> None:
    config = cues_config(rule(side=side))
    assert fired_at(config, make_strides(pelvic_drop_deg=[9.0, 9.0, 9.0])) == fired


def test_side_window_uses_that_side_only() -> None:
    config = cues_config(rule(side="right", window_strides=2, persistence_n=2, persistence_m=2))
    # right strides (odd) are 9; left ones 0 would pull an either-side mean down
    strides = make_strides(pelvic_drop_deg=[0, 9] * 4)
    assert fired_at(config, strides) == [5]


def test_valid_range_skips_implausible_values() -> None:
    config = cues_config(
        rule(metric="cadence_spm", high=None, low=155.0, valid_min=130.0, window_strides=2)
    )
    strides = make_strides(cadence_spm=[170, 110, 112, 108, 170, 170, 150, 150])
    assert fired_at(config, strides) == [7]


# -------------------------------------------------------------------------------- baseline


def baseline_rule(**overrides: Any) -> CueRuleConfig:
    fields: dict[str, Any] = {
        "metric": "braking_mps",
        "high": None,
        "band": "baseline",
        "baseline_sd": 2.0,
        "baseline_delta": 0.03,
        "window_strides": 5,
        "persistence_n": 4,
        "persistence_m": 6,
        "hysteresis": 0.02,
    }
    fields.update(overrides)
    return rule(**fields)


def test_session_baseline() -> None:
    rng = np.random.default_rng(7)
    braking = [float(v) for v in rng.normal(0.20, 0.02, 400)]
    braking[300:] = [float(v) for v in rng.normal(0.32, 0.02, 100)]
    config = cues_config(baseline_rule(), mute_first_strides=10, baseline={"strides": 50})
    strides = make_strides(braking_mps=braking)
    engine = CueEngine(config)
    engine.update(strides[:59])
    assert engine.band("r") is None and engine.baseline("braking_mps") is None
    engine.update(strides[59:60])
    mean, sd = engine.baseline("braking_mps") or (math.nan, math.nan)
    assert mean == pytest.approx(float(np.mean(braking[10:60])))
    assert sd == pytest.approx(float(np.std(braking[10:60], ddof=1)))
    assert engine.band("r") == pytest.approx((-math.inf, mean + 2.0 * sd + 0.03))
    engine.reset()
    cues = engine.update(strides)
    index = {s.t_detected: i for i, s in enumerate(strides)}
    assert [index[c.t] for c in cues] and all(300 <= index[c.t] < 308 for c in cues)
    # 10 muted at the start, 49 while collecting: the 50th stride completes and is evaluated
    assert engine.stats["r"].suppressed_by_mute == 59


@pytest.mark.parametrize(
    ("direction", "values", "fired"),
    [
        ("above", [10.0] * 6 + [13.0] * 6, [6]),
        ("above", [10.0] * 6 + [7.0] * 6, []),
        ("below", [10.0] * 6 + [7.0] * 6, [6]),
        ("both", [13.0] * 3 + [10.0] * 3 + [7.0] * 3, [0, 6]),
    ],
)
def test_athlete_baseline(direction: str, values: list[float], fired: list[int]) -> None:
    config = cues_config(
        rule(
            metric="pelvic_rotation_deg",
            high=None,
            band="baseline",
            direction=direction,
            baseline_sd=1.0,
            baseline_delta=1.0,
        )
    )
    baseline = {"pelvic_rotation_deg": (10.0, 1.0)}  # band 8..12
    strides = make_strides(pelvic_rotation_deg=values)
    assert fired_at(config, strides, baseline=baseline) == fired


def test_athlete_baseline_ready_from_the_start() -> None:
    config = cues_config(baseline_rule(), baseline={"strides": 100})
    engine = CueEngine(config, {"braking_mps": (0.2, 0.01)})
    assert engine.band("r") == pytest.approx((-math.inf, 0.25))
    engine.reset()
    assert engine.baseline("braking_mps") == (0.2, 0.01)


@pytest.mark.parametrize(
    ("baseline", "message"),
    [
        ({"speed": (1.0, 0.1)}, "unknown metric 'speed'"),
        ({"braking_mps": (0.2, -0.1)}, "baseline.braking_mps"),
        ({"braking_mps": (math.nan, 0.1)}, "finite"),
    ],
)
def test_bad_athlete_baseline(baseline: dict[str, tuple[float, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CueEngine(cues_config(baseline_rule()), baseline)


# ------------------------------------------------------------------------- engine contract


def test_chunking_and_reset_give_the_same_cues() -> None:
    config = load_config().cues
    strides = normal_run(1500, seed=3, drop=[(0, 5.0), (600, 10.0), (900, 4.0), (1200, 9.0)])
    whole = run_cues(config, strides)
    assert whole.cues
    engine = CueEngine(config)
    for size in (1, 7, 64):
        engine.reset()
        chunked = []
        for start in range(0, len(strides), size):
            chunked.extend(engine.update(strides[start : start + size]))
        assert chunked == whole.cues
        assert engine.stats == whole.stats


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    values=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=80),
    flags=st.lists(st.booleans(), min_size=80, max_size=80),
    cuts=st.lists(st.integers(0, 80), max_size=6),
)
def test_chunking_invariance_property(
    values: list[float], flags: list[bool], cuts: list[int]
) -> None:
    config = cues_config(
        rule(window_strides=3, persistence_n=2, persistence_m=3, hysteresis=1.0, cooldown_s=2.0),
        rule(name="b", priority=50, high=7.0, phrases=["p", "q"]),
        min_gap_s=1.5,
        mute_first_strides=2,
        fading={"mode": "fraction", "steps": [[0, 0.5]]},
    )
    quality = {i: frozenset({"gap"}) for i, f in enumerate(flags) if f and i % 5 == 0}
    strides = make_strides(pelvic_drop_deg=values, quality=quality)
    whole = run_cues(config, strides)
    engine = CueEngine(config)
    bounds = sorted({0, len(strides), *(c for c in cuts if c < len(strides))})
    chunked = []
    decisions = []
    for start, stop in itertools.pairwise(bounds):
        chunked.extend(engine.update(strides[start:stop]))
        decisions.extend(engine.last_decisions)
    assert chunked == whole.cues
    assert decisions == whole.decisions
    assert engine.stats == whole.stats


def test_disabled() -> None:
    strides = make_strides(pelvic_drop_deg=[9.0] * 5)
    assert run_cues(cues_config(rule(), enabled=False), strides).cues == []
    result = run_cues(cues_config(rule(enabled=False)), strides)
    assert result.cues == [] and result.stats == {}


def test_cue_fields() -> None:
    strides = make_strides(pelvic_drop_deg=[0.0, 9.0])
    (cue,) = run_cues(cues_config(rule(name="drop", phrases=["squeeze"])), strides).cues
    assert (cue.t, cue.rule, cue.phrase, cue.side, cue.play_at) == (
        1.0 + DELAY_S,
        "drop",
        "squeeze",
        Side.RIGHT,
        1.0 + DELAY_S,
    )


# ------------------------------------------------------------------------------ beat-aligned


@pytest.mark.parametrize(
    ("last_contact", "step", "decision", "latency", "expected"),
    [
        (10.0, 0.35, 10.1, 0.0, 10.35),
        (10.0, 0.35, 10.1, 0.2, 10.15),
        (10.0, 0.35, 10.1, 0.3, 10.4),
        (10.0, 0.35, 10.0, 0.0, 10.0),
        (10.0, 0.35, 10.0, 0.35, 10.0),
        (10.0, 0.35, 10.9, 0.0, 11.05),
        (10.0, 0.0, 10.9, 0.1, 10.9),
    ],
)
def test_predict_play_at(
    last_contact: float, step: float, decision: float, latency: float, expected: float
) -> None:
    assert predict_play_at(last_contact, step, decision, latency) == pytest.approx(expected)


@pytest.mark.parametrize("latency_ms", [0.0, 150.0, 300.0, 600.0])
def test_beat_aligned_cues_land_on_a_contact(latency_ms: float) -> None:
    step = 60.0 / 180.0
    n = 12
    strides = make_strides(
        step_s=step, pelvic_drop_deg=[0.0] * 8 + [9.0] * 4, cadence_spm=[180.0] * n
    )
    config = cues_config(rule())
    (cue,) = run_cues(config, strides, output_latency_ms=latency_ms, beat_aligned=True).cues
    assert cue.play_at is not None and cue.play_at >= cue.t
    heard = cue.play_at + latency_ms / 1000.0
    beats = heard / step
    assert beats == pytest.approx(round(beats), abs=1e-6)
    assert cue.play_at - cue.t < step + 1e-9  # the first contact that can still be reached


def test_beat_aligned_without_cadence_uses_contact_intervals() -> None:
    strides = make_strides(step_s=0.4, pelvic_drop_deg=[0.0] * 5 + [9.0])
    (cue,) = run_cues(cues_config(rule()), strides, beat_aligned=True).cues
    assert cue.play_at == pytest.approx(2.4)  # contact at 2.0, decision at 2.25


# ---------------------------------------------------------------------------------- config

CONFIG_ERRORS = [
    # (cues section, expected text in the problems)
    ({"rules": [{"window_strides": 0}]}, "cues.rules.0.window_strides", "allowed: >= 1"),
    ({"rules": [{"metric": "speed"}]}, "cues.rules.0.metric", "'pelvic_drop_deg'"),
    ({"rules": [{"side": "both"}]}, "cues.rules.0.side", "'either'"),
    ({"rules": [{"low": 7.0}]}, "cues.rules.0", "low (7.0) must be below high (5.0)"),
    ({"rules": [{"high": None}]}, "cues.rules.0", "needs low, high or both"),
    (
        {"rules": [{"persistence_n": 5, "persistence_m": 3}]},
        "cues.rules.0",
        "persistence_n (5) must not exceed persistence_m (3)",
    ),
    ({"rules": [{"low": 3.0, "hysteresis": 1.0}]}, "cues.rules.0", "half the band width"),
    ({"rules": [{"band": "baseline"}]}, "cues.rules.0", "high only apply to band = 'absolute'"),
    (
        {"rules": [{"band": "baseline", "high": None}]},
        "cues.rules.0",
        "baseline_sd > 0 or baseline_delta > 0",
    ),
    ({"rules": [{"baseline_sd": 2.0}]}, "cues.rules.0", "only apply to band = 'baseline'"),
    ({"rules": [{"baseline_sd": 20.0}]}, "cues.rules.0.baseline_sd", "allowed: >= 0.0 and <= 10"),
    ({"rules": [{"threshold": 3.0}]}, "cues.rules.0.threshold", "unknown key"),
    ({"rules": [{"phrases": []}]}, "cues.rules.0.phrases", "at least 1"),
    ({"rules": [{"cooldown_s": -1.0}]}, "cues.rules.0.cooldown_s", "allowed: >= 0.0"),
    ({"rules": [{"valid_min": 3.0, "valid_max": 1.0}]}, "cues.rules.0", "valid_min (3.0)"),
    ({"rules": [{"statistic": "mode"}]}, "cues.rules.0.statistic", "'median'"),
    ({"rules": [{}, {}]}, "cues", "repeated: r"),
    ({"mute_on": ["wobble"]}, "cues.mute_on.0", "'stale_sensor'"),
    ({"min_gap_s": -1.0}, "cues.min_gap_s", "allowed: >= 0.0 and <= 600.0"),
    ({"fading": {"mode": "random"}}, "cues.fading.mode", "'blocks'"),
    ({"fading": {"mode": "fraction"}}, "cues.fading", "needs at least one step"),
    ({"fading": {"steps": [[0, 1.5]]}}, "cues.fading.steps.0.fraction", "allowed: >= 0.0"),
    ({"fading": {"steps": [[0, 1.0], [0, 0.5]]}}, "cues.fading", "strictly increasing"),
    ({"fading": {"steps": [[5, 1.0]]}}, "cues.fading", "from_minute = 0"),
    ({"fading": {"feedback_s": 0.0}}, "cues.fading.feedback_s", "allowed: > 0.0"),
    ({"baseline": {"strides": 2}}, "cues.baseline.strides", "allowed: >= 5"),
]

BASE_RULE = {"name": "r", "metric": "pelvic_drop_deg", "high": 5.0, "phrases": ["x"]}


@pytest.mark.parametrize(("section", "path", "text"), CONFIG_ERRORS)
def test_config_errors_name_the_field(section: dict[str, Any], path: str, text: str) -> None:
    cues = dict(section)
    if "rules" in cues:
        cues["rules"] = [
            {k: v for k, v in {**BASE_RULE, **r}.items() if v is not None} for r in cues["rules"]
        ]
    with pytest.raises(ConfigError) as caught:
        parse_config({"cues": cues})
    problems = caught.value.problems
    assert any(p.startswith(path + ":") and text in p for p in problems), problems


def test_fading_steps_as_tables_or_pairs() -> None:
    a = FadingConfig.model_validate({"mode": "fraction", "steps": [[0, 1.0], [10, 0.5]]})
    b = FadingConfig.model_validate(
        {
            "mode": "fraction",
            "steps": [{"from_minute": 0, "fraction": 1.0}, {"from_minute": 10, "fraction": 0.5}],
        }
    )
    assert a == b


def test_quality_flag_names_match_types() -> None:
    assert set(typing.get_args(QualityFlagName)) == {f.value for f in QualityFlag}


# ----------------------------------------------------------------- default rules, scenarios

STEP_S = 60.0 / 171.0


def normal_run(
    n: int, seed: int, drop: Sequence[tuple[int, float]] = ((0, 5.0),), drop_sd: float = 1.0
) -> list[Stride]:
    """A runner at normal form (section 6 of design.md) with a piecewise-constant mean drop."""
    rng = np.random.default_rng(seed)
    mean_drop = np.zeros(n)
    for start, value in drop:
        mean_drop[start:] = value
    cadence = 171.0 + rng.normal(0.0, 2.5, n)
    contact = 250.0 + rng.normal(0.0, 15.0, n)
    rotation = 12.0 + rng.normal(0.0, 1.5, n)
    braking = 0.18 + rng.normal(0.0, 0.025, n)
    drops = mean_drop + rng.normal(0.0, drop_sd, n)
    strides = []
    t = 0.0
    for i in range(n):
        step = 60.0 / cadence[i]
        strides.append(
            Stride(
                t=t,
                t_detected=t + step + 0.05,
                side=Side.LEFT if i % 2 == 0 else Side.RIGHT,
                contact_time_ms=float(contact[i]),
                flight_time_ms=float(step * 1000.0 - contact[i]),
                cadence_spm=float(cadence[i]),
                pelvic_drop_deg=float(drops[i]),
                pelvic_rotation_deg=float(rotation[i]),
                vertical_oscillation_cm=float(8.0 + rng.normal(0.0, 0.5)),
                impact_peak_g=float(4.0 + rng.normal(0.0, 0.4)),
                braking_mps=float(braking[i]),
            )
        )
        t += step
    return strides


def test_default_config_rules() -> None:
    config = load_config().cues
    names = [r.name for r in config.rules]
    assert names[0] == "pelvic_drop"
    top = max(config.rules, key=lambda r: r.priority)
    assert top.name == "pelvic_drop" and top.phrases == ["squeeze, relax, float"]
    assert {r.metric for r in config.rules} >= {
        "pelvic_drop_deg",
        "cadence_spm",
        "contact_time_ms",
        "pelvic_rotation_deg",
    }


@pytest.mark.parametrize("seed", range(10))
def test_default_pelvic_drop_fault_cued_within_8_strides(seed: int) -> None:
    config = load_config().cues
    strides = normal_run(400, seed, drop=[(0, 4.0), (200, 10.0)])
    index = {s.t_detected: i for i, s in enumerate(strides)}
    drop_cues = [index[c.t] for c in run_cues(config, strides).cues if c.rule == "pelvic_drop"]
    assert drop_cues, "the fault was never cued"
    assert 200 <= drop_cues[0] < 208


@pytest.mark.parametrize("seed", range(5))
def test_default_clean_run_has_at_most_one_false_cue_per_10_min(seed: int) -> None:
    config = load_config().cues
    strides = normal_run(1710, seed + 100, drop=[(0, 5.0)], drop_sd=1.5)  # 10 min at 171 spm
    assert strides[-1].t == pytest.approx(600.0, rel=0.02)
    assert len(run_cues(config, strides).cues) <= 1
