"""Threshold tuning (pure: strides in, tables out): sweeps, suggested thresholds, baselines.

The detection core's stride metrics are computed once per session; a sweep only re-runs the
cue engine (:class:`~coach.cues.CueEngine`, as :func:`~coach.cues.engine.run_cues` does) over
those strides for every setting of a grid, so a hundred settings over an hour take seconds.
A setting changes rule fields by ``model_copy(update=...)`` and re-validates the rule, so an
out-of-range value fails before any work with an error naming the field.

For each setting, rule and stance side the sweep reports the cues given, cues per minute, the
first cue's time and the time the rule's moving value spent outside its band. The moving value
is recomputed here with exactly the engine's rules (muted start, quality mutes, missing or
implausible values, baseline readiness, window), which a test checks against the engine's
``evaluated`` and ``outside`` counts.
"""

from __future__ import annotations

import itertools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from coach.config import CueRuleConfig, CuesConfig
from coach.cues import CueEngine
from coach.errors import ConfigError
from coach.types import FloatArray, Side, Stride

#: ``RULE.FIELD`` prefix that varies a field of ``[cues]`` itself (e.g. ``cues.min_gap_s``).
CUES_TARGET = "cues"
#: Most settings one sweep may hold.
MAX_SETTINGS = 20_000
#: Side label of the rows that add up all sides.
ALL_SIDES = "all"

#: Cadence below which a step counts as walking, spm (``cadence_low.valid_min`` of the default
#: config); contact longer than ``WALK_CONTACT_MS`` also counts as walking.
WALK_CADENCE_SPM = 130.0
WALK_CONTACT_MS = 450.0

Setting = tuple[tuple[str, float], ...]
"""One point of a sweep: ``(RULE.FIELD, value)`` pairs in the order of the ``--vary`` options."""
ProgressCallback = Callable[[int, int], None]


def _numeric_fields(model: Any) -> tuple[str, ...]:
    """Fields of a pydantic model whose type is int or float (optionally None)."""
    names = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = (
            set(typing.get_args(annotation))
            if isinstance(annotation, types.UnionType)
            else {annotation}
        )
        if args - {type(None)} and args - {type(None)} <= {int, float}:
            names.append(name)
    return tuple(names)


#: Rule fields a sweep may vary (numbers only: thresholds, window, persistence, timing).
RULE_FIELDS: tuple[str, ...] = _numeric_fields(CueRuleConfig)
#: ``[cues]`` fields a sweep may vary as ``cues.FIELD``.
CUES_FIELDS: tuple[str, ...] = _numeric_fields(CuesConfig)


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Vary:
    """One ``--vary RULE.FIELD=...`` option: the values a field takes in the sweep."""

    target: str
    field: str
    values: tuple[float, ...]

    @property
    def key(self) -> str:
        """``RULE.FIELD``."""
        return f"{self.target}.{self.field}"


_VARY = re.compile(r"^\s*(?P<target>[a-z0-9_]+)\.(?P<field>[a-z0-9_]+)\s*=\s*(?P<spec>.+?)\s*$")


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--vary {option!r}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"--vary {option!r}: values must be finite")
    return value


def parse_vary(text: str) -> Vary:
    """Parse ``RULE.FIELD=START:STOP:STEP`` (STOP included), ``RULE.FIELD=A,B,C`` or one value.

    Raises:
        ValueError: the syntax is wrong, the range is empty or too long.

    """
    match = _VARY.match(text)
    if match is None:
        raise ValueError(
            f"--vary {text!r}: expected RULE.FIELD=START:STOP:STEP (e.g. pelvic_drop.high=5:9:0.5) "
            "or RULE.FIELD=A,B,C"
        )
    spec = match["spec"]
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"--vary {text!r}: a range is START:STOP:STEP")
        start, stop, step = (_number(p, text) for p in parts)
        if step <= 0.0 or stop < start:
            raise ValueError(f"--vary {text!r}: need STEP > 0 and START <= STOP")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_SETTINGS:
            raise ValueError(f"--vary {text!r}: {count} values, at most {MAX_SETTINGS}")
        values = tuple(round(start + i * step, 10) for i in range(count))
    else:
        values = tuple(_number(p, text) for p in spec.split(","))
    return Vary(match["target"], match["field"], values)


def check_varies(cues: CuesConfig, varies: Sequence[Vary]) -> None:
    """Check that every varied rule and field exists and is numeric.

    Raises:
        ConfigError: an unknown rule or field, a field that is not a number, or a repeat.

    """
    names = [rule.name for rule in cues.rules]
    problems = []
    keys = [vary.key for vary in varies]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"{key}: varied twice; give all its values in one --vary")
    for vary in varies:
        if vary.target == CUES_TARGET:
            if vary.field not in CUES_FIELDS:
                problems.append(
                    f"{vary.key}: not a numeric [cues] field (allowed: {', '.join(CUES_FIELDS)})"
                )
        elif vary.target not in names:
            problems.append(
                f"{vary.key}: no rule named {vary.target!r} in [cues] "
                f"(rules: {', '.join(names) or 'none'}; or cues.FIELD for [cues] itself)"
            )
        elif vary.field not in RULE_FIELDS:
            problems.append(
                f"{vary.key}: not a numeric rule field (allowed: {', '.join(RULE_FIELDS)})"
            )
    if problems:
        raise ConfigError("--vary", problems)


def grid(varies: Sequence[Vary]) -> list[Setting]:
    """Every combination of the varied values (the first ``--vary`` changes slowest)."""
    total = math.prod(len(vary.values) for vary in varies)
    if total > MAX_SETTINGS:
        raise ConfigError("--vary", [f"{total} settings in the grid, at most {MAX_SETTINGS}"])
    keys = [vary.key for vary in varies]
    return [
        tuple(zip(keys, values, strict=True))
        for values in itertools.product(*(vary.values for vary in varies))
    ]


def _validation_problems(
    error: ValidationError, where: str, label: str, varied: Mapping[str, float]
) -> list[str]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        # a field's own error names its own value; a cross-field error names every varied one
        own = {k: v for k, v in varied.items() if path and k.endswith(f".{path}")}
        shown = ", ".join(f"{k} = {_fmt(v)}" for k, v in (own or varied).items())
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}{'.' + path if path else ''} ({label}--vary {shown}): {message}")
    return problems


def apply_setting(cues: CuesConfig, setting: Setting) -> CuesConfig:
    """The ``[cues]`` config with the setting's values, every changed part re-validated.

    Raises:
        ConfigError: a value is out of range or inconsistent with the rule (e.g. a
            ``persistence_n`` above ``persistence_m``); each line names the field.

    """
    by_rule: dict[str, dict[str, float]] = {}
    cues_update: dict[str, float] = {}
    for key, value in setting:
        target, name = key.split(".", 1)
        if target == CUES_TARGET:
            cues_update[name] = value
        else:
            by_rule.setdefault(target, {})[name] = value
    rules = list(cues.rules)
    problems: list[str] = []
    for index, rule in enumerate(rules):
        update = by_rule.get(rule.name)
        if not update:
            continue
        changed = rule.model_copy(update=update)
        # ints arrive as floats (5.0): dump without warnings, validation converts or rejects
        data = changed.model_dump(include=rule.model_fields_set | set(update), warnings=False)
        try:
            rules[index] = CueRuleConfig.model_validate(data)
        except ValidationError as error:
            varied = {f"{rule.name}.{k}": v for k, v in update.items()}
            problems.extend(
                _validation_problems(error, f"cues.rules.{index}", f"rule {rule.name}, ", varied)
            )
    if problems:
        raise ConfigError("--vary", problems)
    if not by_rule and not cues_update:
        return cues
    data2 = {name: getattr(cues, name) for name in type(cues).model_fields}
    data2.update(cues_update, rules=rules)
    try:
        return CuesConfig.model_validate(data2)
    except ValidationError as error:
        shown = {f"{CUES_TARGET}.{k}": v for k, v in cues_update.items()}
        raise ConfigError("--vary", _validation_problems(error, CUES_TARGET, "", shown)) from None


def grid_configs(
    cues: CuesConfig, varies: Sequence[Vary], max_problems: int = 8
) -> list[CuesConfig]:
    """The ``[cues]`` config of every setting of the grid, all validated before any is used.

    Raises:
        ConfigError: unknown rules or fields, or settings that do not validate (the distinct
            problems of all settings, at most ``max_problems`` of them listed).

    """
    check_varies(cues, varies)
    configs: list[CuesConfig] = []
    problems: list[str] = []
    for setting in grid(varies):
        try:
            configs.append(apply_setting(cues, setting))
        except ConfigError as error:
            problems.extend(p for p in error.problems if p not in problems)
    if problems:
        more = len(problems) - max_problems
        raise ConfigError(
            "--vary", problems[:max_problems] + ([f"... and {more} more"] if more > 0 else [])
        )
    return configs


# ------------------------------------------------------------------------- moving values


@dataclass(frozen=True)
class MovingSeries:
    """A rule's moving value at each stride the engine evaluates it.

    Attributes:
        t: decision time of each evaluation (the stride's ``t_detected``), s.
        side: stance side of each evaluated stride (``left``, ``right``, ``unknown``).
        value: the moving mean or median, metric units.
        hold_s: how long each value stands: the time to the next evaluation, at most twice the
            median interval (so mutes and gaps do not count), s.

    """

    t: FloatArray
    side: np.ndarray
    value: FloatArray
    hold_s: FloatArray

    def __len__(self) -> int:
        return int(self.t.shape[0])


def _muted(cues: CuesConfig, stride: Stride) -> bool:
    return bool(stride.quality) and not frozenset(cues.mute_on).isdisjoint(stride.quality)


def _baseline_ready_index(cues: CuesConfig, metric: str, strides: Sequence[Stride]) -> int | None:
    """Index of the stride at which the engine's session baseline of ``metric`` is complete."""
    count = 0
    for index, stride in enumerate(strides):
        if index < cues.mute_first_strides or _muted(cues, stride):
            continue
        if getattr(stride, metric) is not None:
            count += 1
            if count >= cues.baseline.strides:
                return index
    return None


def moving_series(
    cues: CuesConfig,
    rule: CueRuleConfig,
    strides: Sequence[Stride],
    baseline: Mapping[str, tuple[float, float]] | None = None,
) -> MovingSeries:
    """The moving value of ``rule`` over a session, evaluated exactly where the engine does."""
    ready_from: int | None = 0
    if rule.band == "baseline" and rule.metric not in (baseline or {}):
        ready_from = _baseline_ready_index(cues, rule.metric, strides)
    times: list[float] = []
    sides: list[str] = []
    values: list[float] = []
    if cues.enabled and ready_from is not None:
        only = None if rule.side == "either" else Side(rule.side)
        low = -math.inf if rule.valid_min is None else rule.valid_min
        high = math.inf if rule.valid_max is None else rule.valid_max
        k = rule.window_strides
        median = rule.statistic == "median"
        window: list[float] = []
        for index, stride in enumerate(strides):
            if index < cues.mute_first_strides:
                continue
            if _muted(cues, stride):
                window.clear()
                continue
            if only is not None and stride.side is not only:
                continue
            raw = getattr(stride, rule.metric)
            if raw is None:
                window.clear()
                continue
            value = float(raw)
            if index < ready_from or not low <= value <= high:
                continue
            window.append(value)
            if len(window) > k:
                del window[0]
            if len(window) < k:
                continue
            if median:
                ordered = sorted(window)
                mid = k // 2
                moving = ordered[mid] if k % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
            else:
                moving = sum(window) / k
            times.append(stride.t_detected)
            sides.append(stride.side.value)
            values.append(moving)
    t = np.asarray(times, dtype=np.float64)
    hold = np.diff(t)
    typical = float(np.median(hold)) if hold.size else 0.0
    hold = np.minimum(np.append(hold, typical), 2.0 * typical) if t.size else hold
    return MovingSeries(
        t, np.asarray(sides, dtype="<U7"), np.asarray(values, dtype=np.float64), hold
    )


@dataclass
class SessionStrides:
    """One session's strides (computed once by the core) and its length.

    Moving values are cached per rule shape, so settings that only move thresholds reuse them.
    """

    name: str
    strides: Sequence[Stride]
    duration_s: float
    _cache: dict[tuple[Any, ...], MovingSeries] = field(default_factory=dict, repr=False)

    def series(
        self,
        cues: CuesConfig,
        rule: CueRuleConfig,
        baseline: Mapping[str, tuple[float, float]] | None,
    ) -> MovingSeries:
        """:func:`moving_series` of ``rule``, cached by what it depends on."""
        session_baseline = rule.band == "baseline" and rule.metric not in (baseline or {})
        key = (
            cues.enabled, cues.mute_first_strides, tuple(sorted(cues.mute_on)),
            cues.baseline.strides if session_baseline else None,
            rule.metric, rule.side, rule.statistic, rule.window_strides, rule.valid_min,
            rule.valid_max,
        )  # fmt: skip
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = moving_series(cues, rule, self.strides, baseline)
        return found

    @property
    def sides(self) -> list[str]:
        """Stance sides present, in the order left, right, unknown."""
        present = {stride.side for stride in self.strides}
        return [side.value for side in (Side.LEFT, Side.RIGHT, Side.UNKNOWN) if side in present]


# --------------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class SweepRow:
    """What one rule did on one side of one session under one setting.

    Attributes:
        setting: the varied values.
        session: session name (``all`` for the sum over sessions).
        rule: rule name.
        side: stance side of the strides (``all`` = every side).
        cues: cues spoken.
        first_cue_s: session time of the first cue, s (None without cues; the earliest over
            sessions in ``all`` rows).
        outside_s: time the moving value was outside the band, s.
        evaluated_s: time the rule was evaluated (moving value known, band ready), s.
        duration_s: session length, s.
        evaluated: number of evaluations.
        outside: evaluations outside the band.

    """

    setting: Setting
    session: str
    rule: str
    side: str
    cues: int
    first_cue_s: float | None
    outside_s: float
    evaluated_s: float
    duration_s: float
    evaluated: int
    outside: int

    @property
    def cues_per_min(self) -> float:
        """Cues per minute of session."""
        return 60.0 * self.cues / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def outside_fraction(self) -> float:
        """Share of the evaluated time spent outside the band (0–1)."""
        return self.outside_s / self.evaluated_s if self.evaluated_s > 0 else 0.0


def evaluate_setting(
    cues: CuesConfig,
    session: SessionStrides,
    setting: Setting = (),
    baseline: Mapping[str, tuple[float, float]] | None = None,
) -> list[SweepRow]:
    """Run the cue engine over a session's strides; one row per enabled rule and side."""
    engine = CueEngine(cues, baseline)
    spoken = engine.update(session.strides)
    rows = []
    for rule in (r for r in cues.rules if r.enabled):
        series = session.series(cues, rule, baseline)
        band = engine.band(rule.name)
        low, high = band if band is not None else (-math.inf, math.inf)
        outside = (series.value > high) | (series.value < low)
        rule_cues = [cue for cue in spoken if cue.rule == rule.name]
        for side in [*session.sides, ALL_SIDES]:
            on_side = np.ones(len(series), bool) if side == ALL_SIDES else series.side == side
            side_cues = [c for c in rule_cues if side in (ALL_SIDES, c.side.value)]
            rows.append(
                SweepRow(
                    setting=setting,
                    session=session.name,
                    rule=rule.name,
                    side=side,
                    cues=len(side_cues),
                    first_cue_s=side_cues[0].t if side_cues else None,
                    outside_s=float(series.hold_s[on_side & outside].sum()),
                    evaluated_s=float(series.hold_s[on_side].sum()),
                    duration_s=session.duration_s,
                    evaluated=int(on_side.sum()),
                    outside=int((on_side & outside).sum()),
                )
            )
    return rows


def sweep(
    cues: CuesConfig,
    sessions: Sequence[SessionStrides],
    varies: Sequence[Vary],
    baseline: Mapping[str, tuple[float, float]] | None = None,
    progress: ProgressCallback | None = None,
) -> list[SweepRow]:
    """Evaluate every setting of the grid on every session (rows per session, rule and side).

    Every setting is validated before the first is run. ``progress(done, total)`` is called
    after each setting.

    Raises:
        ConfigError: an unknown rule or field, or a setting that does not validate.

    """
    settings = grid(varies)
    configs = grid_configs(cues, varies)
    rows: list[SweepRow] = []
    for done, (setting, config) in enumerate(zip(settings, configs, strict=True), start=1):
        for session in sessions:
            rows.extend(evaluate_setting(config, session, setting, baseline))
        if progress is not None:
            progress(done, len(settings))
    return rows


def combine_sessions(rows: Iterable[SweepRow]) -> list[SweepRow]:
    """Rows summed over sessions (session ``all``), in first-seen order."""
    groups: dict[tuple[Setting, str, str], list[SweepRow]] = {}
    for row in rows:
        groups.setdefault((row.setting, row.rule, row.side), []).append(row)
    combined = []
    for (setting, rule, side), members in groups.items():
        firsts = [r.first_cue_s for r in members if r.first_cue_s is not None]
        combined.append(
            SweepRow(
                setting=setting,
                session=ALL_SIDES,
                rule=rule,
                side=side,
                cues=sum(r.cues for r in members),
                first_cue_s=min(firsts) if firsts else None,
                outside_s=sum(r.outside_s for r in members),
                evaluated_s=sum(r.evaluated_s for r in members),
                duration_s=sum(r.duration_s for r in members),
                evaluated=sum(r.evaluated for r in members),
                outside=sum(r.outside for r in members),
            )
        )
    return combined


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


SWEEP_COLUMNS: tuple[str, ...] = (
    "session", "rule", "side", "cues", "cues_per_min", "first_cue_s", "outside_s",
    "outside_pct", "evaluated_s",
)  # fmt: skip


def sweep_records(rows: Iterable[SweepRow], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows as flat records (varied keys first, then :data:`SWEEP_COLUMNS`), for CSV."""
    records = []
    for row in rows:
        record: dict[str, Any] = dict(row.setting)
        record = {key: record.get(key) for key in keys}
        record.update(
            session=row.session,
            rule=row.rule,
            side=row.side,
            cues=row.cues,
            cues_per_min=round(row.cues_per_min, 4),
            first_cue_s=None if row.first_cue_s is None else round(row.first_cue_s, 3),
            outside_s=round(row.outside_s, 3),
            outside_pct=round(100.0 * row.outside_fraction, 2),
            evaluated_s=round(row.evaluated_s, 3),
        )
        records.append(record)
    return records


def format_sweep_table(
    rows: Sequence[SweepRow], keys: Sequence[str], rules: Sequence[str] | None = None
) -> str:
    """A fixed-width table of the rows (optionally only some rules)."""
    header = [*keys, "rule", "side", "cues", "cues/min", "first cue s", "outside s", "outside %"]
    lines = [header]
    for row in rows:
        if rules is not None and row.rule not in rules:
            continue
        values = dict(row.setting)
        lines.append(
            [
                *(_fmt(values.get(key)) for key in keys),
                row.rule,
                row.side,
                str(row.cues),
                f"{row.cues_per_min:.2f}",
                "-" if row.first_cue_s is None else f"{row.first_cue_s:.1f}",
                f"{row.outside_s:.1f}",
                f"{100.0 * row.outside_fraction:.1f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i >= len(keys) + 2 or i < len(keys) else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


# ------------------------------------------------------------------------------ suggest


@dataclass(frozen=True)
class Suggestion:
    """A proposed band for one rule.

    Attributes:
        rule: the rule as it would be with the suggestion (None when none could be made).
        name: rule name.
        changes: field -> (current, suggested) value.
        evaluated: strides the moving value was evaluated at (all sessions).
        current_fraction: share of those strides outside the current band.
        note: why no suggestion was made, or what it is based on.

    """

    rule: CueRuleConfig | None
    name: str
    changes: dict[str, tuple[float | None, float]]
    evaluated: int
    current_fraction: float | None
    note: str


def _round(value: float, spread: float) -> float:
    """``value`` to a tenth of the ``spread``'s order of magnitude (e.g. 169.3 for sd 1.6)."""
    if not spread > 0.0:
        return float(f"{value:.4g}")
    step = 10.0 ** math.floor(math.log10(spread / 10.0))
    return round(round(value / step) * step, 12)


def _suggest_absolute(rule: CueRuleConfig, values: FloatArray, fraction: float) -> dict[str, float]:
    spread = float(np.std(values))
    if rule.low is not None and rule.high is not None:
        return {
            "low": _round(float(np.quantile(values, fraction / 2.0)), spread),
            "high": _round(float(np.quantile(values, 1.0 - fraction / 2.0)), spread),
        }
    if rule.low is not None:
        return {"low": _round(float(np.quantile(values, fraction)), spread)}
    return {"high": _round(float(np.quantile(values, 1.0 - fraction)), spread)}


def _suggest_baseline(
    rule: CueRuleConfig, values: FloatArray, means: FloatArray, sds: FloatArray, fraction: float
) -> dict[str, float] | str:
    deviation = {
        "above": values - means,
        "below": means - values,
        "both": np.abs(values - means),
    }[rule.direction]
    width = float(np.quantile(deviation, 1.0 - fraction))
    sd = float(np.median(sds))
    if width <= rule.baseline_delta or sd <= 0.0:
        if width <= 0.0:
            return (
                "the moving value is rarely beyond the baseline mean: no band would cue that often"
            )
        return {"baseline_sd": 0.0, "baseline_delta": _round(width, float(np.std(deviation)))}
    return {"baseline_sd": _round((width - rule.baseline_delta) / sd, 0.1)}


def suggest(
    cues: CuesConfig,
    sessions: Sequence[SessionStrides],
    fraction: float = 0.1,
    baseline: Mapping[str, tuple[float, float]] | None = None,
) -> list[Suggestion]:
    """Per enabled rule, the band that would have had ~``fraction`` of evaluated strides outside.

    The limit is the quantile of the rule's moving value (both limits of a two-sided band share
    the fraction); baseline bands get the ``baseline_sd`` (or ``baseline_delta``) giving that
    quantile with each session's baseline. Persistence, cooldown and the global gap then decide
    how many cues that makes (check with a sweep).

    Raises:
        ValueError: ``fraction`` not in (0, 0.5].

    """
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"--fraction must be in (0, 0.5], got {fraction}")
    suggestions = []
    for rule in (r for r in cues.rules if r.enabled):
        values: list[FloatArray] = []
        means: list[FloatArray] = []
        sds: list[FloatArray] = []
        outside = 0
        for session in sessions:
            series = session.series(cues, rule, baseline)
            engine_band = _band_of(cues, rule, session, baseline)
            if engine_band is None or not len(series):
                continue
            values.append(series.value)
            outside += int(
                ((series.value > engine_band[1]) | (series.value < engine_band[0])).sum()
            )
            if rule.band == "baseline":
                mean, sd = _baseline_of(cues, rule, session, baseline)
                means.append(np.full(len(series), mean))
                sds.append(np.full(len(series), sd))
        n = int(sum(v.size for v in values))
        if n < 10:
            suggestions.append(
                Suggestion(
                    None, rule.name, {}, n, None, f"{n} evaluated strides, at least 10 needed"
                )
            )
            continue
        pooled = np.concatenate(values)
        if rule.band == "absolute":
            found: dict[str, float] | str = _suggest_absolute(rule, pooled, fraction)
        else:
            found = _suggest_baseline(
                rule, pooled, np.concatenate(means), np.concatenate(sds), fraction
            )
        current = outside / n
        if isinstance(found, str):
            suggestions.append(Suggestion(None, rule.name, {}, n, current, found))
            continue
        changes = {name: (getattr(rule, name), value) for name, value in found.items()}
        try:
            new = apply_setting(
                CuesConfig(rules=[rule]), tuple((f"{rule.name}.{k}", v) for k, v in found.items())
            ).rules[0]
        except ConfigError as error:
            note = "; ".join(error.problems)
            suggestions.append(Suggestion(None, rule.name, changes, n, current, note))
            continue
        note = f"{rule.statistic} of {rule.window_strides} strides, {n} strides evaluated"
        suggestions.append(Suggestion(new, rule.name, changes, n, current, note))
    return suggestions


def _band_of(
    cues: CuesConfig,
    rule: CueRuleConfig,
    session: SessionStrides,
    baseline: Mapping[str, tuple[float, float]] | None,
) -> tuple[float, float] | None:
    if rule.band == "absolute":
        return (
            -math.inf if rule.low is None else rule.low,
            math.inf if rule.high is None else rule.high,
        )
    mean, sd = _baseline_of(cues, rule, session, baseline)
    if math.isnan(mean):
        return None
    width = rule.baseline_sd * sd + rule.baseline_delta
    return (
        mean - width if rule.direction in ("below", "both") else -math.inf,
        mean + width if rule.direction in ("above", "both") else math.inf,
    )


def _baseline_of(
    cues: CuesConfig,
    rule: CueRuleConfig,
    session: SessionStrides,
    baseline: Mapping[str, tuple[float, float]] | None,
) -> tuple[float, float]:
    """The ``(mean, sd)`` the engine uses for ``rule`` in ``session`` (NaN when never ready)."""
    if baseline and rule.metric in baseline:
        return baseline[rule.metric]
    engine = CueEngine(cues.model_copy(update={"rules": [rule]}))
    engine.update(session.strides)
    found = engine.baseline(rule.metric)
    return found if found is not None else (math.nan, math.nan)


def suggestions_toml(suggestions: Sequence[Suggestion], fraction: float) -> str:
    """The suggestions as ``[[cues.rules]]`` tables to paste over the current ones."""
    import tomli_w

    lines = [
        f"# Suggested bands: ~{100 * fraction:g} % of evaluated strides outside each band.",
        "# Replace the matching [[cues.rules]] tables of your config with these.",
    ]
    for item in suggestions:
        lines.append("")
        changes = ", ".join(
            f"{name} {_fmt(old)} -> {_fmt(new)}" for name, (old, new) in item.changes.items()
        )
        now = (
            ""
            if item.current_fraction is None
            else f"; now {100 * item.current_fraction:.1f} % outside"
        )
        if item.rule is None:
            lines.append(f"# {item.name}: no suggestion ({item.note}{now})")
            continue
        lines.append(f"# {item.name}: {changes} ({item.note}{now})")
        data = item.rule.model_dump(mode="json", include=item.rule.model_fields_set)
        lines.append(tomli_w.dumps({"cues": {"rules": [data]}}).rstrip())
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class MetricBaseline:
    """Mean and spread of one metric over steady running.

    Attributes:
        mean: mean, metric units.
        sd: sample standard deviation, metric units.
        n: values used.
        outliers: values left out by the median/MAD test.

    """

    mean: float
    sd: float
    n: int
    outliers: int


@dataclass(frozen=True)
class SteadyBaseline:
    """The runner's baseline from steady running strides.

    Attributes:
        metrics: per metric measured often enough.
        strides_total: strides offered.
        strides_steady: strides left after the exclusions.
        excluded: strides left out, per reason (``start``, ``quality``, ``walking``).
        too_few: metrics measured, but on fewer than ``min_strides`` steady strides.

    """

    metrics: dict[str, MetricBaseline]
    strides_total: int
    strides_steady: int
    excluded: dict[str, int]
    too_few: dict[str, int]


def _walking(stride: Stride) -> bool:
    cadence, contact = stride.cadence_spm, stride.contact_time_ms
    return (cadence is not None and cadence < WALK_CADENCE_SPM) or (
        contact is not None and contact > WALK_CONTACT_MS
    )


def steady_baseline(
    sessions: Sequence[Sequence[Stride]],
    metrics: Sequence[str],
    skip_first: int = 30,
    min_strides: int = 30,
    mad_z: float = 3.5,
) -> SteadyBaseline:
    """Mean and sd per metric over steady running, both sides pooled (as the engine's baseline).

    Left out: each session's first ``skip_first`` strides, strides carrying any quality flag,
    walking steps (cadence below 130 spm or contact above 450 ms), then per metric the outliers
    whose robust z-score ``|x - median| / (1.4826 MAD)`` exceeds ``mad_z`` (Iglewicz & Hoaglin
    1993). A metric needs ``min_strides`` values.
    """
    excluded = {"start": 0, "quality": 0, "walking": 0}
    steady: list[Stride] = []
    total = 0
    for strides in sessions:
        for index, stride in enumerate(strides):
            total += 1
            reason = (
                "start" if index < skip_first
                else "quality" if stride.quality
                else "walking" if _walking(stride)
                else None
            )  # fmt: skip
            if reason is None:
                steady.append(stride)
            else:
                excluded[reason] += 1
    found: dict[str, MetricBaseline] = {}
    too_few: dict[str, int] = {}
    for metric in metrics:
        raw = [getattr(s, metric) for s in steady]
        values = np.asarray([v for v in raw if v is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        median = float(np.median(values))
        mad = 1.4826 * float(np.median(np.abs(values - median)))
        keep = np.abs(values - median) <= mad_z * mad if mad > 0 else np.ones(values.size, bool)
        kept = values[keep]
        if kept.size < max(min_strides, 2):
            too_few[metric] = int(kept.size)
            continue
        found[metric] = MetricBaseline(
            float(kept.mean()), float(kept.std(ddof=1)), int(kept.size), int((~keep).sum())
        )
    return SteadyBaseline(found, total, len(steady), excluded, too_few)
