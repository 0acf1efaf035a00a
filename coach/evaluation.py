"""Scoring detections against ground truth: shared by the benchmarks and the accuracy tests.

Truth folders follow ``shared/data/truth/<name>/`` and the simulator's ``truth/``:
``events.csv`` (``t,kind,side``), optionally ``pelvis_angles.csv`` and ``strides.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.types import EventKind, FloatArray, GaitEvent, SampleBlock, Side, Stride


def read_truth_events(folder: Path) -> list[GaitEvent]:
    """Read ``folder/events.csv`` (``t,kind,side``) as events with ``t_detected = t``."""
    events = []
    with open(folder / "events.csv", newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            t = float(row["t"])
            events.append(GaitEvent(t, t, EventKind(row["kind"]), Side(row["side"])))
    return events


@dataclass(frozen=True)
class EventScore:
    """How well detected events of one kind match the truth.

    Attributes:
        n_truth: truth events in the scored span.
        n_found: truth events with a detection within the window.
        n_spurious: detections matching no truth event.
        errors_s: detected minus true time of each match, s.
        delays_s: ``t_detected - t`` of each matched detection, s.
        side_correct: matches whose side is right (sides known on both).
        side_known: matches where both sides are known and the detection's is not unknown.

    """

    n_truth: int
    n_found: int
    n_spurious: int
    errors_s: FloatArray
    delays_s: FloatArray
    side_correct: int
    side_known: int

    @property
    def found_fraction(self) -> float:
        """Share of truth events found."""
        return self.n_found / self.n_truth if self.n_truth else float("nan")

    @property
    def spurious_fraction(self) -> float:
        """Spurious detections per truth event."""
        return self.n_spurious / self.n_truth if self.n_truth else float("nan")

    def median_abs_ms(self) -> float:
        """Median absolute timing error, ms."""
        return float(np.median(np.abs(self.errors_s)) * 1000) if self.n_found else float("nan")

    def p95_abs_ms(self) -> float:
        """95th percentile absolute timing error, ms."""
        if not self.n_found:
            return float("nan")
        return float(np.percentile(np.abs(self.errors_s), 95) * 1000)

    def bias_ms(self) -> float:
        """Mean signed timing error (detected minus truth), ms."""
        return float(np.mean(self.errors_s) * 1000) if self.n_found else float("nan")

    def median_delay_ms(self) -> float:
        """Median ``t_detected - t``, ms."""
        return float(np.median(self.delays_s) * 1000) if self.n_found else float("nan")

    def side_fraction(self) -> float:
        """Share of matches with the right side (where sides are known)."""
        return self.side_correct / self.side_known if self.side_known else float("nan")

    @staticmethod
    def combine(scores: Sequence[EventScore]) -> EventScore:
        """Pool several scores (e.g. over seeds or sessions)."""
        return EventScore(
            sum(s.n_truth for s in scores),
            sum(s.n_found for s in scores),
            sum(s.n_spurious for s in scores),
            np.concatenate([s.errors_s for s in scores]) if scores else np.zeros(0),
            np.concatenate([s.delays_s for s in scores]) if scores else np.zeros(0),
            sum(s.side_correct for s in scores),
            sum(s.side_known for s in scores),
        )


def match_events(
    detected: Sequence[GaitEvent],
    truth: Sequence[GaitEvent],
    kind: EventKind,
    window_s: float,
    span: tuple[float, float] | None = None,
    use_side: bool = True,
) -> EventScore:
    """Match detections to truth events of one kind, one-to-one, nearest first.

    Args:
        detected: detected events (any kinds; only ``kind`` is scored).
        truth: truth events.
        kind: the event kind scored.
        window_s: largest |detected − truth| accepted as a match, s.
        span: only truth and detections with ``t`` in this interval are scored.
        use_side: match only same-side events when both sides are known.

    """
    lo, hi = span if span is not None else (-np.inf, np.inf)
    det = [e for e in detected if e.kind is kind and lo <= e.t <= hi]
    ref = [e for e in truth if e.kind is kind and lo <= e.t <= hi]
    pairs = []
    for i, d in enumerate(det):
        for j, r in enumerate(ref):
            error = d.t - r.t
            sides_known = Side.UNKNOWN not in (d.side, r.side)
            if abs(error) <= window_s and (not use_side or not sides_known or d.side is r.side):
                pairs.append((abs(error), i, j))
    pairs.sort()
    used_d: set[int] = set()
    used_r: set[int] = set()
    errors, delays = [], []
    side_correct = side_known = 0
    for _, i, j in pairs:
        if i in used_d or j in used_r:
            continue
        used_d.add(i)
        used_r.add(j)
        errors.append(det[i].t - ref[j].t)
        delays.append(det[i].t_detected - det[i].t)
        if Side.UNKNOWN not in (det[i].side, ref[j].side):
            side_known += 1
            side_correct += det[i].side is ref[j].side
    return EventScore(
        len(ref),
        len(used_r),
        len(det) - len(used_d),
        np.array(errors),
        np.array(delays),
        side_correct,
        side_known,
    )


def match_strides(
    detected: Sequence[Stride], truth: Sequence[Stride], window_s: float
) -> list[tuple[Stride, Stride]]:
    """Pair detected stances with truth stances of the same side whose IC is within the window."""
    pairs = []
    truth_by_side = {
        side: sorted((s for s in truth if s.side is side), key=lambda s: s.t)
        for side in (Side.LEFT, Side.RIGHT)
    }
    for stride in detected:
        candidates = truth_by_side.get(stride.side, [])
        if not candidates:
            continue
        times = np.array([s.t for s in candidates])
        k = int(np.argmin(np.abs(times - stride.t)))
        if abs(times[k] - stride.t) <= window_s:
            pairs.append((stride, candidates[k]))
    return pairs


def metric_rmse(pairs: Sequence[tuple[Stride, Stride]], metric: str) -> tuple[float, int]:
    """RMSE of one stride metric over matched pairs where both have it; and the count."""
    diffs = [
        getattr(d, metric) - getattr(t, metric)
        for d, t in pairs
        if getattr(d, metric) is not None and getattr(t, metric) is not None
    ]
    if not diffs:
        return float("nan"), 0
    return float(np.sqrt(np.mean(np.square(diffs)))), len(diffs)


def spectral_cadence_spm(block: SampleBlock, lo_spm: float = 60.0, hi_spm: float = 240.0) -> float:
    """Dominant step frequency of a sensor's signal, steps/min (Welch spectrum peak).

    Uses the acceleration magnitude, whose dominant periodicity is the step (one impact per
    foot contact) for a pelvis sensor. For a shank sensor the dominant periodicity is the stride,
    so the caller doubles the result.
    """
    from scipy.signal import welch

    rate = 1.0 / float(np.median(np.diff(block.t)))
    magnitude = np.linalg.norm(block.acc, axis=1)
    segment = min(len(block), int(rate * 8))
    freqs, power = welch(magnitude - magnitude.mean(), fs=rate, nperseg=segment)
    band = (freqs >= lo_spm / 60) & (freqs <= hi_spm / 60)
    return float(freqs[band][np.argmax(power[band])] * 60)


def read_truth_angles(folder: Path) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """``t, obliquity_deg, rotation_deg`` from ``folder/pelvis_angles.csv`` (None when absent)."""
    path = folder / "pelvis_angles.csv"
    if not path.is_file():
        return None
    table = np.genfromtxt(path, delimiter=",", names=True)
    return (
        np.asarray(table["t"], float),
        np.asarray(table["obliquity_deg"], float),
        np.asarray(table["rotation_deg"], float),
    )


def truth_strides(
    events: Sequence[GaitEvent],
    angles: tuple[FloatArray, FloatArray, FloatArray] | None,
    max_step_s: float = 0.7,
) -> list[Stride]:
    """Per-stance truth from truth events and angles, with coach's own definitions.

    Runs the same :class:`~coach.stream.strides.StrideAssembler` as the core, so detected and
    truth stances are measured identically (design.md section 3).
    """
    from coach.stream.strides import StrideAssembler, StrideTiming

    span_s, rate_hz = 10.0, 200.0
    if angles is not None:
        span_s = float(angles[0][-1] - angles[0][0]) + 10.0
        rate_hz = 1.1 / float(np.median(np.diff(angles[0])))
    assembler = StrideAssembler(
        StrideTiming(min_step_s=0.2, max_step_s=max_step_s),
        pelvis_angles=angles is not None,
        toe_off_sides=frozenset({Side.LEFT, Side.RIGHT}),
        ring_s=span_s,
        ring_rate_hz=rate_hz,
    )
    assembler.add_events(list(events))
    if angles is not None:
        t, obliquity, rotation = angles
        assembler.add_pelvis(t, obliquity, rotation, np.isfinite(obliquity) & np.isfinite(rotation))
    assembler.set_watermark(Side.LEFT, np.inf)
    assembler.set_watermark(Side.RIGHT, np.inf)
    return assembler.poll()
