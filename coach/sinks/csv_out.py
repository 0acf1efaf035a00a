"""Writers of the run outputs of design.md section 4: events, strides and cues CSVs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
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


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[list[str]]) -> int:
    """Write a header and rows as CSV; returns the number of rows."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def write_events(path: Path, events: Iterable[GaitEvent]) -> int:
    """Write ``t,t_detected,kind,side`` (times in s); returns the number of rows."""
    return _write_rows(
        path,
        EVENT_COLUMNS,
        ([f"{e.t:.4f}", f"{e.t_detected:.4f}", e.kind.value, e.side.value] for e in events),
    )


def write_strides(path: Path, strides: Iterable[Stride]) -> int:
    """Write one row per stance; an empty cell where the sensors cannot measure a metric."""
    return _write_rows(
        path,
        STRIDE_COLUMNS,
        (
            [
                f"{s.t:.4f}",
                f"{s.t_detected:.4f}",
                s.side.value,
                *(_cell(getattr(s, name), METRIC_DECIMALS[name]) for name in STRIDE_METRICS),
                ";".join(sorted(s.quality)),
            ]
            for s in strides
        ),
    )


def write_cues(path: Path, cues: Iterable[Cue]) -> int:
    """Write ``t,rule,phrase`` (t in s); returns the number of rows."""
    return _write_rows(path, CUE_COLUMNS, ([f"{c.t:.3f}", c.rule, c.phrase] for c in cues))
