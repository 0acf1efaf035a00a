"""Writers of the run outputs of design.md section 4: events, strides and cues CSVs."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from coach.types import STRIDE_METRICS, Cue, GaitEvent, Stride

EVENT_COLUMNS = ("t", "t_detected", "kind", "side")
STRIDE_COLUMNS = ("t", "t_detected", "side", *STRIDE_METRICS, "quality")
#: Decimals written per stride metric.
METRIC_DECIMALS = {
    "contact_time_ms": 1,
    "flight_time_ms": 1,
    "cadence_spm": 1,
    "pelvic_drop_deg": 2,
    "pelvic_rotation_deg": 2,
    "vertical_oscillation_cm": 2,
    "impact_peak_g": 2,
    "braking_mps": 3,
}
CUE_COLUMNS = ("t", "rule", "phrase")


def _cell(value: float | None, digits: int) -> str:
    """A number with ``digits`` decimals, or an empty cell for an unmeasured metric."""
    return "" if value is None else f"{value:.{digits}f}"


def write_events(path: Path, events: Iterable[GaitEvent]) -> int:
    """Write ``t,t_detected,kind,side`` (times in s); returns the number of rows."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(EVENT_COLUMNS)
        for event in events:
            writer.writerow(
                [f"{event.t:.4f}", f"{event.t_detected:.4f}", event.kind.value, event.side.value]
            )
            rows += 1
    return rows


def write_strides(path: Path, strides: Iterable[Stride]) -> int:
    """Write one row per stance; an empty cell where the sensors cannot measure a metric."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(STRIDE_COLUMNS)
        for s in strides:
            writer.writerow(
                [
                    f"{s.t:.4f}",
                    f"{s.t_detected:.4f}",
                    s.side.value,
                    *(_cell(getattr(s, name), METRIC_DECIMALS[name]) for name in STRIDE_METRICS),
                    ";".join(sorted(s.quality)),
                ]
            )
            rows += 1
    return rows


def write_cues(path: Path, cues: Iterable[Cue]) -> int:
    """Write ``t,rule,phrase`` (t in s); returns the number of rows."""
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CUE_COLUMNS)
        for cue in cues:
            writer.writerow([f"{cue.t:.3f}", cue.rule, cue.phrase])
            rows += 1
    return rows
