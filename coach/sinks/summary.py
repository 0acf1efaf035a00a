"""A plain-text summary of a run or replay: strides per side, metrics, quality and cues."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from coach.types import Cue, Side, Stride

_METRICS: tuple[tuple[str, str, int], ...] = (
    ("cadence_spm", "cadence (spm)", 0),
    ("contact_time_ms", "contact time (ms)", 0),
    ("flight_time_ms", "flight time (ms)", 0),
    ("pelvic_drop_deg", "pelvic drop (deg)", 1),
    ("pelvic_rotation_deg", "pelvic rotation (deg)", 1),
    ("vertical_oscillation_cm", "vertical oscillation (cm)", 1),
    ("impact_peak_g", "shank impact peak (g)", 1),
    ("braking_mps", "braking (m/s)", 2),
)


def _describe(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    array = np.asarray(values)
    return (
        f"{np.median(array):.{digits}f} ({np.percentile(array, 10):.{digits}f}–"
        f"{np.percentile(array, 90):.{digits}f})"
    )


def format_summary(strides: Sequence[Stride], cues: Sequence[Cue], duration_s: float) -> str:
    """Median (10th–90th percentile) of each metric per side, quality flags and cues."""
    sides = (Side.LEFT, Side.RIGHT, Side.UNKNOWN)
    by_side = {side: [s for s in strides if s.side is side] for side in sides}
    shown = [side for side in sides if by_side[side]] or [Side.LEFT, Side.RIGHT]
    lines = [
        f"Duration {duration_s:.1f} s, {len(strides)} stances, {len(cues)} cues",
        "",
        f"{'metric':<27}" + "".join(f"{side.value + ' stance':>24}" for side in shown),
        f"{'stances':<27}" + "".join(f"{len(by_side[side]):>24}" for side in shown),
    ]
    for name, label, digits in _METRICS:
        cells = []
        for side in shown:
            values = [getattr(s, name) for s in by_side[side] if getattr(s, name) is not None]
            cells.append(f"{_describe(values, digits):>24}")
        lines.append(f"{label:<27}" + "".join(cells))
    flags = Counter(flag for s in strides for flag in s.quality)
    flagged = sum(1 for s in strides if s.quality)
    lines.append("")
    lines.append(
        f"Quality: {flagged} of {len(strides)} stances flagged"
        + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(flags.items())) + ")" if flags else "")
    )
    if cues:
        lines.append("")
        lines.append("Cues:")
        lines.extend(f'  {cue.t:8.1f} s  {cue.rule:<20} "{cue.phrase}"' for cue in cues)
    return "\n".join(lines)
