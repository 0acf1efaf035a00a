"""A session report: one offline HTML file with plots (PNG, base64-embedded) and summary tables.

For a coach or physio after a run: per-stride pelvic drop and rotation for each side over time
with the cues marked, contact time and cadence over time, the distributions with the band
edges of the matching rules, left/right symmetry, when the data were doubtful, and tables of
the data quality (flagged strides per flag, gaps, sensors, duration). No external resources:
the file opens anywhere, offline. Plots use matplotlib's Agg renderer (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from coach.config import CuesConfig
from coach.cues import CueEngine
from coach.sources.replay import SensorSummary
from coach.types import STRIDE_METRICS, Cue, QualityChange, Side, Stride

#: Label and unit of each stride metric.
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "contact_time_ms": ("Contact time", "ms"),
    "flight_time_ms": ("Flight time", "ms"),
    "cadence_spm": ("Cadence", "steps/min"),
    "pelvic_drop_deg": ("Pelvic drop", "deg"),
    "pelvic_rotation_deg": ("Pelvic rotation", "deg"),
    "vertical_oscillation_cm": ("Vertical oscillation", "cm"),
    "impact_peak_g": ("Shank impact peak", "g"),
    "braking_mps": ("Braking", "m/s"),
}
SIDE_COLOURS = {Side.LEFT: "#1f77b4", Side.RIGHT: "#d62728", Side.UNKNOWN: "#7f7f7f"}
RULE_COLOURS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
#: Symmetry index shading: |SI| within this many percent counts as symmetric.
SYMMETRY_BAND_PCT = 10.0
DPI = 100


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows.

    Attributes:
        title: heading (e.g. the session folder name).
        source: where the session came from (path).
        strides: the run's strides in time order.
        cues: cues given.
        quality: quality flag changes.
        duration_s: session length, s.
        sensors: per-sensor summary of the recording.
        cues_config: the ``[cues]`` section (rules give the band edges).
        baseline: athlete-file baseline ``(mean, sd)`` per metric, if any.
        notes: extra ``(label, value)`` lines for the session table.

    """

    title: str
    source: str
    strides: Sequence[Stride]
    cues: Sequence[Cue]
    quality: Sequence[QualityChange]
    duration_s: float
    sensors: Sequence[SensorSummary]
    cues_config: CuesConfig
    baseline: Mapping[str, tuple[float, float]] | None = None
    notes: Sequence[tuple[str, str]] = field(default_factory=tuple)


@dataclass(frozen=True)
class RuleBand:
    """Band edges of one rule as used in the session (None: unbounded or never ready)."""

    rule: str
    metric: str
    low: float | None
    high: float | None
    colour: str


# ---------------------------------------------------------------------------------- data


def rule_bands(data: ReportData) -> list[RuleBand]:
    """The band of each enabled rule, as the engine set it for this session's strides."""
    engine = CueEngine(data.cues_config, data.baseline)
    engine.update(data.strides)
    bands = []
    enabled = [rule for rule in data.cues_config.rules if rule.enabled]
    for index, rule in enumerate(enabled):
        band = engine.band(rule.name)
        low, high = band if band is not None else (-math.inf, math.inf)
        bands.append(
            RuleBand(
                rule.name,
                rule.metric,
                low if math.isfinite(low) else None,
                high if math.isfinite(high) else None,
                RULE_COLOURS[index % len(RULE_COLOURS)],
            )
        )
    return bands


def _series(strides: Sequence[Stride], metric: str, side: Side) -> tuple[np.ndarray, np.ndarray]:
    pairs = [
        (s.t, float(v))
        for s in strides
        if s.side is side and (v := getattr(s, metric)) is not None and math.isfinite(v)
    ]
    if not pairs:
        return np.empty(0), np.empty(0)
    t, v = np.asarray(pairs).T
    return t, v


def measured_metrics(strides: Sequence[Stride]) -> list[str]:
    """Metrics with at least one value in the session, in :data:`STRIDE_METRICS` order."""
    return [m for m in STRIDE_METRICS if any(getattr(s, m) is not None for s in strides)]


def _sides(strides: Sequence[Stride]) -> list[Side]:
    present = {s.side for s in strides}
    return [side for side in (Side.LEFT, Side.RIGHT, Side.UNKNOWN) if side in present]


def symmetry_index(left: np.ndarray, right: np.ndarray) -> float | None:
    """Robinson's symmetry index of the medians, %: 100 (R − L) / ((R + L) / 2)."""
    if left.size == 0 or right.size == 0:
        return None
    lm, rm = float(np.median(left)), float(np.median(right))
    mean = 0.5 * (lm + rm)
    return None if mean == 0 else 100.0 * (rm - lm) / abs(mean)


def quality_intervals(
    changes: Sequence[QualityChange], end_s: float
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Active intervals ``(start, end)`` per ``(location, flag)``, s."""
    open_at: dict[tuple[str, str], float] = {}
    intervals: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for change in sorted(changes, key=lambda c: c.t):
        key = (change.location.value, change.flag.value)
        if change.active and key not in open_at:
            open_at[key] = change.t
        elif not change.active and key in open_at:
            intervals.setdefault(key, []).append((open_at.pop(key), change.t))
    for key, start in open_at.items():
        intervals.setdefault(key, []).append((start, max(end_s, start)))
    return intervals


# --------------------------------------------------------------------------------- plots


class _Time:
    """Time axis: seconds for short sessions, minutes from 5 minutes on."""

    def __init__(self, duration_s: float) -> None:
        self.scale = 60.0 if duration_s >= 300.0 else 1.0
        self.label = "session time (min)" if self.scale == 60.0 else "session time (s)"

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return np.asarray(t, dtype=np.float64) / self.scale


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def _rolling_median(values: np.ndarray, k: int = 15) -> np.ndarray:
    if values.size < k:
        return values
    windows = np.lib.stride_tricks.sliding_window_view(values, k)
    smooth = np.median(windows, axis=1)
    pad = k // 2
    return np.concatenate((np.full(pad, np.nan), smooth, np.full(k - 1 - pad, np.nan)))


def _metric_over_time(
    ax: Axes, data: ReportData, metric: str, bands: Sequence[RuleBand], time: _Time
) -> None:
    label, unit = METRIC_LABELS[metric]
    plotted = False
    for side in _sides(data.strides):
        t, v = _series(data.strides, metric, side)
        if t.size == 0:
            continue
        plotted = True
        colour = SIDE_COLOURS[side]
        ax.scatter(time(t), v, s=6, color=colour, alpha=0.35, linewidths=0)
        ax.plot(time(t), _rolling_median(v), color=colour, lw=1.4, label=f"{side.value} stance")
    if not plotted:
        _no_data(ax, f"{label}: not measured with the sensors present")
        return
    for band in (b for b in bands if b.metric == metric):
        for edge, name in ((band.low, "low"), (band.high, "high")):
            if edge is not None:
                ax.axhline(edge, color=band.colour, ls="--", lw=1.1, label=f"{band.rule} {name}")
    _cue_markers(ax, data.cues, bands, time)
    ax.set_ylabel(f"{label} ({unit})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, ncol=4, framealpha=0.8)


def _cue_markers(ax: Axes, cues: Sequence[Cue], bands: Sequence[RuleBand], time: _Time) -> None:
    """A vertical line per cue, and a triangle on the top edge, in the rule's colour."""
    colours = {band.rule: band.colour for band in bands}
    by_rule: dict[str, list[float]] = {}
    for cue in cues:
        by_rule.setdefault(cue.rule, []).append(float(time(cue.t)))
    for rule, times in by_rule.items():
        colour = colours.get(rule, "#000000")
        for x in times:
            ax.axvline(x, color=colour, lw=1.0, alpha=0.6, ls=":")
        ax.plot(
            times, [0.97] * len(times), "v", color=colour, ms=7,
            transform=ax.get_xaxis_transform(), label=f"cue: {rule}",
        )  # fmt: skip


def plot_metric(data: ReportData, metric: str, bands: Sequence[RuleBand]) -> bytes:
    """One metric per stride over time, each side, band edges and cue markers."""
    time = _Time(data.duration_s)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    _metric_over_time(ax, data, metric, bands, time)
    ax.set_xlabel(time.label)
    ax.set_xlim(0.0, float(time(max(data.duration_s, 1e-3))))
    return _png(fig)


def plot_contact_cadence(data: ReportData, bands: Sequence[RuleBand]) -> bytes:
    """Contact time and cadence over time (two panels, shared time axis)."""
    time = _Time(data.duration_s)
    fig = Figure(figsize=(10, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _metric_over_time(top, data, "contact_time_ms", bands, time)
    _metric_over_time(bottom, data, "cadence_spm", bands, time)
    bottom.set_xlabel(time.label)
    bottom.set_xlim(0.0, float(time(max(data.duration_s, 1e-3))))
    return _png(fig)


def plot_distributions(data: ReportData, bands: Sequence[RuleBand]) -> bytes:
    """Histogram of each measured metric per side, with the band edges of matching rules."""
    metrics = measured_metrics(data.strides)
    columns = 3
    rows = max(1, math.ceil(len(metrics) / columns))
    fig = Figure(figsize=(10, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    if not metrics:
        axes[0].set_visible(True)
        _no_data(axes[0], "no stride metrics measured")
    for ax, metric in zip(axes, metrics, strict=False):
        label, unit = METRIC_LABELS[metric]
        all_values = np.concatenate(
            [_series(data.strides, metric, side)[1] for side in _sides(data.strides)]
        )
        edges = np.histogram_bin_edges(all_values, bins=30)
        for side in _sides(data.strides):
            values = _series(data.strides, metric, side)[1]
            if values.size:
                ax.hist(
                    values, bins=edges, histtype="step", lw=1.3, color=SIDE_COLOURS[side],
                    label=side.value,
                )  # fmt: skip
        for band in (b for b in bands if b.metric == metric):
            for edge in (band.low, band.high):
                if edge is not None:
                    ax.axvline(edge, color=band.colour, ls="--", lw=1.2, label=band.rule)
        ax.set_title(f"{label} ({unit})", fontsize=9)
        ax.tick_params(labelsize=7)
        handles, names = ax.get_legend_handles_labels()
        unique = dict(zip(names, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=6)
    return _png(fig)


def plot_symmetry(data: ReportData) -> bytes:
    """Symmetry index (right vs left medians) per metric, with the ±10 % band shaded."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax = fig.add_subplot()
    names, values, notes = [], [], []
    for metric in measured_metrics(data.strides):
        left = _series(data.strides, metric, Side.LEFT)[1]
        right = _series(data.strides, metric, Side.RIGHT)[1]
        si = symmetry_index(left, right)
        if si is None:
            continue
        label, unit = METRIC_LABELS[metric]
        names.append(label)
        values.append(si)
        notes.append(f"L {np.median(left):.3g} / R {np.median(right):.3g} {unit}")
    if not names:
        _no_data(ax, "left/right symmetry needs strides of both sides")
        return _png(fig)
    y = np.arange(len(names))
    colours = ["#2ca02c" if abs(v) <= SYMMETRY_BAND_PCT else "#d62728" for v in values]
    ax.barh(y, values, color=colours, alpha=0.8)
    ax.axvspan(-SYMMETRY_BAND_PCT, SYMMETRY_BAND_PCT, color="#cccccc", alpha=0.35, lw=0)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    limit = max(25.0, 1.25 * max(abs(v) for v in values))
    ax.set_xlim(-limit, limit)
    for yi, note in zip(y, notes, strict=True):
        ax.text(limit * 0.98, float(yi), note, ha="right", va="center", fontsize=7, color="#333333")
    ax.set_xlabel("symmetry index 100·(R − L)/mean(L, R) (%)   > 0: right larger")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_quality(data: ReportData) -> bytes:
    """When each quality flag was active, per sensor location."""
    time = _Time(data.duration_s)
    intervals = quality_intervals(data.quality, data.duration_s)
    keys = sorted(intervals)
    fig = Figure(figsize=(10, 0.5 + 0.4 * max(len(keys), 2)), layout="constrained")
    ax = fig.add_subplot()
    if not keys:
        _no_data(ax, "no quality flag was raised")
        return _png(fig)
    for row, key in enumerate(keys):
        spans = [(float(time(a)), float(time(b - a))) for a, b in intervals[key]]
        ax.broken_barh(spans, (row - 0.35, 0.7), color="#ff7f0e")
    ax.set_yticks(range(len(keys)), [f"{loc}: {flag}" for loc, flag in keys], fontsize=8)
    ax.set_xlim(0.0, float(time(max(data.duration_s, 1e-3))))
    ax.set_xlabel(time.label)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1040px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid
#ddd}.sub{color:#666;margin-top:2px}table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}figure{margin:10px 0}
figcaption{color:#555;font-size:.85em}img{max-width:100%;height:auto;border:1px solid #eee}
.grid{display:flex;flex-wrap:wrap;gap:24px}
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _figure(png: bytes, title: str, caption: str, figure_id: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{figure_id}"><h3>{html.escape(title)}</h3>'
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _session_rows(data: ReportData) -> list[tuple[str, str]]:
    by_side = Counter(s.side.value for s in data.strides)
    minutes = data.duration_s / 60.0
    flagged = sum(1 for s in data.strides if s.quality)
    rows = [
        ("source", data.source),
        ("duration", f"{data.duration_s:.1f} s ({minutes:.1f} min)"),
        (
            "strides (stances)",
            f"{len(data.strides)} ({', '.join(f'{k} {v}' for k, v in sorted(by_side.items()))})",
        ),
        ("flagged strides", f"{flagged} ({100.0 * flagged / max(len(data.strides), 1):.1f} %)"),
        (
            "cues",
            f"{len(data.cues)} ({len(data.cues) / minutes:.2f} per min)" if minutes > 0 else "0",
        ),
        ("sensors", ", ".join(s.location.value for s in data.sensors) or "–"),
        ("baseline", "athlete file" if data.baseline else "session's first steady strides"),
    ]
    rows.extend(data.notes)
    return rows


def _quality_rows(data: ReportData) -> list[list[object]]:
    per_flag = Counter(flag for s in data.strides for flag in s.quality)
    intervals = quality_intervals(data.quality, data.duration_s)
    raised: Counter[str] = Counter()
    active: dict[str, float] = {}
    for (_, flag), spans in intervals.items():
        raised[flag] += len(spans)
        active[flag] = active.get(flag, 0.0) + sum(b - a for a, b in spans)
    flags = sorted(set(per_flag) | set(raised))
    return [[flag, per_flag[flag], raised[flag], f"{active.get(flag, 0.0):.1f}"] for flag in flags]


def _metric_rows(data: ReportData) -> list[list[object]]:
    rows: list[list[object]] = []
    for metric in measured_metrics(data.strides):
        label, unit = METRIC_LABELS[metric]
        cells: list[object] = [f"{label} ({unit})"]
        per_side = {}
        for side in (Side.LEFT, Side.RIGHT):
            values = _series(data.strides, metric, side)[1]
            per_side[side] = values
            if values.size:
                q1, med, q3 = np.percentile(values, [25, 50, 75])
                cells.append(f"{med:.3g} ({q1:.3g}–{q3:.3g})")
            else:
                cells.append("–")
        si = symmetry_index(per_side[Side.LEFT], per_side[Side.RIGHT])
        cells.append("–" if si is None else f"{si:+.1f}")
        rows.append(cells)
    return rows


def _cue_rows(data: ReportData, bands: Sequence[RuleBand]) -> list[list[object]]:
    rows: list[list[object]] = []
    for band in bands:
        mine = [c for c in data.cues if c.rule == band.rule]
        rows.append([
            band.rule, band.metric, _fmt(band.low), _fmt(band.high), len(mine),
            f"{mine[0].t:.1f}" if mine else "–",
        ])  # fmt: skip
    return rows


def render_report(data: ReportData) -> str:
    """The complete HTML document (self-contained)."""
    bands = rule_bands(data)
    figures = [
        _figure(
            plot_metric(data, "pelvic_drop_deg", bands),
            "Pelvic drop per stride",
            "Contralateral pelvic drop of each stance (dots) and its running median (line), per "
            "stance side; dashed: band edges of the matching rules; dotted verticals: cues.",
            "fig-pelvic-drop",
        ),
        _figure(
            plot_metric(data, "pelvic_rotation_deg", bands),
            "Pelvic rotation per stride",
            "Peak-to-peak pelvic rotation of each step, per stance side, with band edges and cues.",
            "fig-pelvic-rotation",
        ),
        _figure(
            plot_contact_cadence(data, bands),
            "Contact time and cadence",
            "Ground contact time and cadence of each stance over time, with band edges and cues.",
            "fig-contact-cadence",
        ),
        _figure(
            plot_distributions(data, bands),
            "Distributions",
            "Histogram of each measured metric per side; dashed: band edges of the rules on it.",
            "fig-distributions",
        ),
        _figure(
            plot_symmetry(data),
            "Left/right symmetry",
            f"Symmetry index of the medians; within ±{SYMMETRY_BAND_PCT:g} % (shaded) counts as "
            "symmetric.",
            "fig-symmetry",
        ),
        _figure(
            plot_quality(data),
            "Data quality over time",
            "When each quality flag was raised, per sensor; the cue engine is muted meanwhile.",
            "fig-quality",
        ),
    ]
    sensors = [
        [s.location.value, s.samples, f"{s.rate_hz:.1f}", "yes" if s.has_gyro else "no",
         f"{s.duration_s:.1f}", s.gaps, s.missing_samples]
        for s in data.sensors
    ]  # fmt: skip
    cue_list = [[f"{c.t:.2f}", c.rule, c.side.value, c.phrase] for c in data.cues]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>coach report: {html.escape(data.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>coach session report: {html.escape(data.title)}</h1>",
        f'<p class="sub">{html.escape(data.source)}</p>',
        "<h2>Summary</h2>",
        _table(["item", "value"], _session_rows(data), "summary"),
        '<div class="grid"><div><h3>Data quality</h3>',
        _table(
            ["flag", "strides flagged", "times raised", "time active (s)"],
            _quality_rows(data),
            "quality",
        ),
        "</div><div><h3>Sensors</h3>",
        _table(
            ["location", "samples", "rate (Hz)", "gyro", "duration (s)", "gaps", "missing samples"],
            sensors,
            "sensors",
        ),
        "</div></div>",
        "<h3>Metrics (median and interquartile range)</h3>",
        _table(["metric", "left", "right", "symmetry index (%)"], _metric_rows(data), "metrics"),
        "<h3>Cue rules</h3>",
        _table(
            ["rule", "metric", "band low", "band high", "cues", "first cue (s)"],
            _cue_rows(data, bands),
            "rules",
        ),
        "<h2>Plots</h2>",
        *figures,
        f"<h2>Cues ({len(cue_list)})</h2>",
        _table(["time (s)", "rule", "side", "phrase"], cue_list, "cues"),
        '<p class="sub">Made by coach report. Bands of baseline rules are the runner\'s '
        "baseline as the cue engine set it for this session.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
