"""coach side by side with open-source peers on the same recordings: one run, one table (issue 9).

    pip install -e .[bench]          # gaitmap (+ gaitmap_mad), mobgap, scikit-digital-health,
                                     # imufusion, ahrs; each missing one gives a "not installed" row
    python benchmarks/peers.py [--data ../shared/data] [--block-s 1.0]

Rows (all scored with coach.evaluation, so coach and the peers are measured identically):

1. Foot IMUs, walking (``ipol_*``, 100 Hz, left_foot/right_foot, IC/TO truth with sides):
   coach (``replay_session`` with only the foot sensors) vs gaitmap ``BarthDtw`` +
   ``RamppEventDetection`` (gaitmap's own gravity/PCA/forward-sign alignment to its foot frame).
   Matching: same side, nearest first, window = 1/4 step (median same-side IC interval / 8);
   scored span = first truth event − window … last truth event + window, warm-up included.
2. Lower-back / pelvis IMU: coach pelvis-only (``replay_session`` with only ``pelvis``) vs mobgap
   ``IcdIonescu``, ``IcdShinImproved``, ``IcdHKLeeImproved`` and scikit-digital-health
   ``GaitLumbar``, on ``ipol_*`` (walking, L5, 100 Hz), ``rbds001_run2p5`` (running, sacrum,
   200 Hz) and ``alcantara_sub2_*`` (running, sacral acc only, 500 Hz). Matching as
   benchmarks/pelvis_contacts_real.py: side-agnostic, window = 40 % of the median truth step,
   span = first truth IC − 0.3 s … last + 0.3 s.
3. Pelvis orientation on ``rbds001_run2p5`` vs its optical pelvic angles: coach's PelvisTracker
   (VQF) and the same tracker with its filter swapped for imufusion's AHRS, ``ahrs`` Madgwick and
   ``ahrs`` Mahony (same mount calibration, heading, turn handling, Cardan Z-X'-Y''); per-stance
   contralateral drop and rotation through ``coach.evaluation.truth_strides`` with the truth
   events, for the filter and for the optical angles; RMSE over matched stances.

Times are wall-clock (``time.perf_counter``) of the processing alone (CSV reading excluded), after
one untimed warm-up run of each method (numba JIT, imports), per minute (contacts) or per hour
(orientation) of recording. Peers are offline: they see the whole recording; coach is causal and
its detection delay is the median of ``t_detected − t``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer_contacts as pc
import peer_orientation as po

from coach.config import CoachConfig
from coach.evaluation import (
    EventScore,
    match_events,
    match_strides,
    metric_rmse,
    read_truth_angles,
    read_truth_events,
    truth_strides,
)
from coach.runtime import replay_session
from coach.sources.csv_folder import CsvSession, read_session
from coach.stream.pelvis_orientation import PelvisAngles, PelvisTracker
from coach.types import EventKind, GaitEvent, Location, SampleBlock, Side

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIG = CoachConfig()
FEET = (Location.LEFT_FOOT, Location.RIGHT_FOOT)
COACH = "coach"
CAUSAL = "causal"
OFFLINE = "offline"


@dataclass
class Row:
    """One line of the table."""

    task: str
    data: str
    method: str
    causal: str
    ic: EventScore | None = None
    to: EventScore | None = None
    drop_rmse: float = float("nan")
    rotation_rmse: float = float("nan")
    n_stances: int = 0
    cost: str = ""
    remark: str = ""
    seconds: float = float("nan")
    minutes: float = float("nan")


@dataclass
class Case:
    """One recording to score: its sensor block(s), truth, matching window and span."""

    name: str
    session: CsvSession
    truth: list[GaitEvent]
    window_s: float
    span: tuple[float, float]
    minutes: float


# --- scoring ----------------------------------------------------------------------------------
def score(events: Sequence[GaitEvent], case: Case, kind: EventKind, use_side: bool) -> EventScore:
    """coach.evaluation.match_events with the case's window and span."""
    return match_events(events, case.truth, kind, case.window_s, case.span, use_side)


def feet_case(folder: Path, data: Path) -> Case | None:
    """An IPOL session scored on its feet: window 1/4 step, span over the truth events."""
    truth_dir = data / "truth" / folder.name
    if not (truth_dir / "events.csv").is_file():
        return None
    session = read_session(folder)
    if not all(loc in session.blocks for loc in FEET):
        return None
    truth = read_truth_events(truth_dir)
    intervals = []
    for side in (Side.LEFT, Side.RIGHT):
        ics = [e.t for e in truth if e.kind is EventKind.INITIAL_CONTACT and e.side is side]
        intervals += list(np.diff(ics))
    window = float(np.median(intervals)) / 8.0
    times = [e.t for e in truth]
    subset = CsvSession({k: v for k, v in session.blocks.items() if k in FEET}, session.meta)
    minutes = _minutes(subset)
    return Case(
        folder.name, subset, truth, window, (min(times) - window, max(times) + window), minutes
    )


def pelvis_case(folder: Path, data: Path) -> Case | None:
    """A session scored on its pelvis sensor (pelvis_contacts_real.py matching)."""
    truth_dir = data / "truth" / folder.name
    if not (truth_dir / "events.csv").is_file() or not (folder / "pelvis.csv").is_file():
        return None
    session = read_session(folder)
    truth = read_truth_events(truth_dir)
    ics = np.array([e.t for e in truth if e.kind is EventKind.INITIAL_CONTACT])
    window = 0.4 * float(np.median(np.diff(ics))) if ics.size > 1 else 0.15
    subset = CsvSession({Location.PELVIS: session.blocks[Location.PELVIS]}, session.meta)
    span = (float(ics[0]) - 0.3, float(ics[-1]) + 0.3)
    return Case(folder.name, subset, truth, window, span, _minutes(subset))


def _minutes(session: CsvSession) -> float:
    start = min(float(b.t[0]) for b in session.blocks.values())
    end = max(float(b.t[-1]) for b in session.blocks.values())
    return (end - start) / 60.0


Detector = Callable[[CsvSession], list[GaitEvent]]


def run_contacts(
    task: str,
    data_label: str,
    method: str,
    causal: str,
    detector: Detector,
    cases: list[Case],
    use_side: bool,
    remark: str = "",
) -> Row:
    """Warm up on the first case, then detect and score every case; pooled row."""
    if not cases:
        return Row(task, data_label, method, causal, remark="no recordings")
    detector(cases[0].session)  # warm-up: imports, numba JIT
    ics, tos = [], []
    spent = 0.0
    for case in cases:
        start = time.perf_counter()
        events = detector(case.session)
        spent += time.perf_counter() - start
        ics.append(score(events, case, EventKind.INITIAL_CONTACT, use_side))
        if any(e.kind is EventKind.TOE_OFF for e in events):
            tos.append(score(events, case, EventKind.TOE_OFF, use_side))
    minutes = sum(c.minutes for c in cases)
    ic = EventScore.combine(ics)
    if not ic.n_found:
        remark = f"no events found; {remark}"
    return Row(
        task,
        data_label,
        method,
        causal,
        ic=ic,
        to=EventScore.combine(tos) if tos else None,
        cost=f"{1e3 * spent / minutes:.0f} ms/min",
        remark=remark,
        seconds=spent,
        minutes=minutes,
    )


def coach_detector(block_s: float) -> Detector:
    """coach's whole pipeline (replay_session) on the sensors of the session given."""

    def detect(session: CsvSession) -> list[GaitEvent]:
        return replay_session(CONFIG, session, block_s=block_s).events

    return detect


def missing(task: str, data_label: str, method: str, package: str) -> Row:
    """A row for a peer whose package is not importable here."""
    return Row(task, data_label, method, "—", remark=f"not installed ({package})")


# --- section 1: feet --------------------------------------------------------------------------
def feet_rows(data: Path, block_s: float) -> list[Row]:
    """coach vs gaitmap on the IPOL foot sensors."""
    cases = [c for f in sorted((data / "sessions").glob("ipol_*")) if (c := feet_case(f, data))]
    task, label = "feet, walking", f"ipol ×{len(cases)}, 100 Hz"
    rows = [run_contacts(task, label, COACH, CAUSAL, coach_detector(block_s), cases, True)]
    if pc.available("gaitmap", "gaitmap_mad"):

        def gaitmap(session: CsvSession) -> list[GaitEvent]:
            return pc.gaitmap_events(
                session.blocks[Location.LEFT_FOOT], session.blocks[Location.RIGHT_FOOT]
            )

        rows.append(
            run_contacts(
                task,
                label,
                "gaitmap BarthDtw+Rampp",
                OFFLINE,
                gaitmap,
                cases,
                True,
                "defaults; gaitmap's own gravity/PCA/forward-sign alignment; whole strides only",
            )
        )
    else:
        rows.append(missing(task, label, "gaitmap BarthDtw+Rampp", "gaitmap, gaitmap_mad"))
    return rows


# --- section 2: lower back --------------------------------------------------------------------
def block_of(session: CsvSession) -> SampleBlock:
    """The pelvis sensor of a session."""
    return session.blocks[Location.PELVIS]


def pelvis_rows(data: Path, block_s: float) -> list[Row]:
    """coach pelvis-only vs mobgap and skdh lower-back detectors, per dataset."""
    sessions = data / "sessions"
    groups = {
        "ipol ×{n} walk, L5 100 Hz": sorted(sessions.glob("ipol_*")),
        "rbds001 run, 200 Hz": [sessions / "rbds001_run2p5"],
        "alcantara ×{n} run, acc 500 Hz": sorted(sessions.glob("alcantara_sub2_*")),
    }
    rows: list[Row] = []
    rotations: dict[int, np.ndarray] = {}  # by id() of the session: the converged mount
    for template, folders in groups.items():
        cases = [c for f in folders if f.is_dir() and (c := pelvis_case(f, data))]
        label = template.format(n=len(cases))
        task = "pelvis contacts"
        for case in cases:  # computed once, untimed: given to the peers
            rotations[id(case.session)] = pc.body_rotation(case.session.blocks[Location.PELVIS])

        rows.append(run_contacts(task, label, COACH, CAUSAL, coach_detector(block_s), cases, False))
        if pc.available("mobgap"):
            for name in pc.MOBGAP_DETECTORS:

                def mobgap(session: CsvSession, name: str = name) -> list[GaitEvent]:
                    return pc.mobgap_ics(name, block_of(session), rotations[id(session)])

                rows.append(
                    run_contacts(
                        task,
                        label,
                        f"mobgap {name}",
                        OFFLINE,
                        mobgap,
                        cases,
                        False,
                        "defaults; frame from coach's converged mount; session = 1 gait sequence",
                    )
                )
        else:
            rows.append(missing(task, label, "mobgap Icd*", "mobgap"))
        if pc.available("skdh"):

            def skdh(session: CsvSession) -> list[GaitEvent]:
                return pc.skdh_events(block_of(session), rotations[id(session)])

            rows.append(
                run_contacts(
                    task,
                    label,
                    "skdh GaitLumbar",
                    OFFLINE,
                    skdh,
                    cases,
                    False,
                    "defaults; session = 1 bout; TO = IC + stance time (walking model)",
                )
            )
        else:
            rows.append(missing(task, label, "skdh GaitLumbar", "scikit-digital-health"))
    return rows


# --- section 3: orientation -------------------------------------------------------------------
def run_tracker(tracker: PelvisTracker, block: SampleBlock, block_s: float) -> PelvisAngles:
    """Feed the tracker in blocks; per-sample angles of the whole recording."""
    rate = 1.0 / float(np.median(np.diff(block.t)))
    step = max(1, round(block_s * rate))
    parts = [tracker.update(block.slice(i, i + step)) for i in range(0, len(block), step)]
    return PelvisAngles(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in PelvisAngles.__slots__)
    )


def orientation_rows(data: Path, block_s: float) -> list[Row]:
    """Per-stance drop and rotation RMSE of each filter inside coach's pelvic-angle pipeline."""
    name = "rbds001_run2p5"
    truth_dir = data / "truth" / name
    task, label = "pelvis angles", "rbds001 run, 200 Hz"
    if not (data / "sessions" / name).is_dir() or read_truth_angles(truth_dir) is None:
        return [Row(task, label, COACH, CAUSAL, remark="recording not found")]
    block = read_session(data / "sessions" / name).blocks[Location.PELVIS]
    assert block.gyr is not None
    rate = 1.0 / float(np.median(np.diff(block.t)))
    events = read_truth_events(truth_dir)
    truth = truth_strides(events, read_truth_angles(truth_dir))
    hours = float(block.t[-1] - block.t[0]) / 3600.0

    makers: list[tuple[str, str, Callable[[], PelvisTracker] | None, str]] = [
        (f"{COACH} (vqf)", "vqf", lambda: PelvisTracker(rate), "VQF 6D, library defaults")
    ]
    for adapter, package in (
        (po.ImufusionAhrs, "imufusion"),
        (po.AhrsMadgwick, "ahrs"),
        (po.AhrsMahony, "ahrs"),
    ):
        if pc.available(package):

            def make(adapter: type[po._Adapter] = adapter) -> PelvisTracker:
                return po.FilterPelvisTracker(rate, adapter(rate))

            makers.append((adapter.name, package, make, adapter(rate).settings))
        else:
            makers.append((adapter.name, package, None, ""))

    rows = []
    for method, package, make, settings in makers:
        if make is None:
            rows.append(missing(task, label, method, package))
            continue
        run_tracker(make(), block.slice(0, min(len(block), round(2 * rate))), block_s)  # warm-up
        start = time.perf_counter()
        angles = run_tracker(make(), block, block_s)
        spent = time.perf_counter() - start
        stance = truth_strides(events, (angles.t, angles.obliquity_deg, angles.rotation_deg))
        pairs = match_strides(stance, truth, 0.01)
        drop, n = metric_rmse(pairs, "pelvic_drop_deg")
        rotation, _ = metric_rmse(pairs, "pelvic_rotation_deg")
        rows.append(
            Row(
                task,
                label,
                method,
                CAUSAL,
                drop_rmse=drop,
                rotation_rmse=rotation,
                n_stances=n,
                cost=f"{spent / hours:.1f} s/h",
                remark=settings,
                seconds=spent,
                minutes=hours * 60.0,
            )
        )
    return rows


# --- judging and printing ---------------------------------------------------------------------
def judge(rows: list[Row]) -> None:
    """Add to coach's remark where it is not ahead of the best peer of its group."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.task, row.data), []).append(row)
    for members in groups.values():
        mine = next((r for r in members if r.method.startswith(COACH)), None)
        peers = [r for r in members if r is not mine and not r.remark.startswith("not installed")]
        if mine is None or not peers:
            continue
        notes = []
        if mine.ic is not None:
            notes += _event_notes(mine, peers)
        elif np.isfinite(mine.drop_rmse):
            best_drop = min(peers, key=lambda r: _nan_last(r.drop_rmse))
            best_rot = min(peers, key=lambda r: _nan_last(r.rotation_rmse))
            if best_drop.drop_rmse < mine.drop_rmse:
                notes.append(f"drop behind {best_drop.method}")
            if best_rot.rotation_rmse < mine.rotation_rmse:
                notes.append(f"rotation behind {best_rot.method}")
        mine.remark = "; ".join([*notes, mine.remark] if mine.remark else notes) or "ahead"


def _nan_last(x: float) -> float:
    return x if np.isfinite(x) else np.inf


def _event_notes(mine: Row, peers: list[Row]) -> list[str]:
    notes = []
    assert mine.ic is not None
    for kind in ("ic", "to"):
        own: EventScore | None = getattr(mine, kind)
        scored = [(r, s) for r in peers if (s := getattr(r, kind)) is not None and s.n_found]
        if own is None or not scored:
            continue
        label = kind.upper()
        best_rate = max(scored, key=lambda rs: rs[1].found_fraction)
        if best_rate[1].found_fraction > own.found_fraction + 1e-9:
            notes.append(f"{label} found < {best_rate[0].method}")
        best_med = min(scored, key=lambda rs: rs[1].median_abs_ms())
        if best_med[1].median_abs_ms() < own.median_abs_ms():
            notes.append(f"{label} median err > {best_med[0].method}")
        best_p95 = min(scored, key=lambda rs: rs[1].p95_abs_ms())
        if best_p95[1].p95_abs_ms() < own.p95_abs_ms():
            notes.append(f"{label} p95 > {best_p95[0].method}")
    fastest_offline = [
        r for r in peers if r.causal == OFFLINE and np.isfinite(r.seconds) and r.seconds > 0
    ]
    if fastest_offline and np.isfinite(mine.seconds):
        ratio = min(r.seconds / r.minutes for r in fastest_offline) / (mine.seconds / mine.minutes)
        notes.append(
            f"{ratio:.1f}× faster than fastest peer"
            if ratio >= 1
            else f"{1 / ratio:.1f}× slower than fastest peer"
        )
    return notes


def _event_cells(score: EventScore | None) -> tuple[str, str]:
    if score is None:
        return "—", "—"
    found = f"{100 * score.found_fraction:.1f}% +{100 * score.spurious_fraction:.0f}%"
    error = f"{score.median_abs_ms():.0f}/{score.p95_abs_ms():.0f} ({score.bias_ms():+.0f})"
    return found, error


def print_table(rows: list[Row]) -> None:
    """One Markdown table (pasteable in the README)."""
    header = [
        "task",
        "data",
        "method",
        "live?",
        "IC found +spur.",
        "IC err med/p95 (bias) ms",
        "TO found +spur.",
        "TO err med/p95 (bias) ms",
        "drop/rot RMSE °",
        "delay ms",
        "cost",
        "remark",
    ]
    lines = []
    for r in rows:
        ic_found, ic_err = _event_cells(r.ic)
        to_found, to_err = _event_cells(r.to)
        angles = (
            f"{r.drop_rmse:.2f}/{r.rotation_rmse:.2f} (n={r.n_stances})"
            if np.isfinite(r.drop_rmse)
            else "—"
        )
        if r.causal == CAUSAL and r.ic is not None:
            delay = f"{r.ic.median_delay_ms():.0f}"
        elif r.causal == CAUSAL and np.isfinite(r.drop_rmse):
            delay = "per sample"
        else:
            delay = "whole rec." if r.causal == OFFLINE else "—"
        lines.append(
            [
                r.task,
                r.data,
                r.method,
                r.causal,
                ic_found,
                ic_err,
                to_found,
                to_err,
                angles,
                delay,
                r.cost or "—",
                r.remark,
            ]
        )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for line in lines:
        print("| " + " | ".join(line) + " |")


def machine() -> str:
    """Platform, CPU model and core count, Python, and the peers' versions."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for dist in (
        "numpy",
        "vqf",
        "gaitmap",
        "gaitmap_mad",
        "mobgap",
        "scikit-digital-health",
        "imufusion",
        "ahrs",
    ):
        try:
            versions.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            versions.append(f"{dist} not installed")
    return (
        f"machine: {platform.platform()}; {model}; {os.cpu_count()} cores; "
        f"Python {platform.python_version()}\npackages: {', '.join(versions)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--block-s",
        type=float,
        default=1.0,
        help="block length coach and the trackers are fed in, s (results do not depend on it)",
    )
    args = parser.parse_args()
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(machine())
    if not (args.data / "sessions").is_dir():
        print(f"recordings not found at {args.data}: nothing to compare")
        return
    started = time.perf_counter()
    rows = feet_rows(args.data, args.block_s)
    rows += pelvis_rows(args.data, args.block_s)
    rows += orientation_rows(args.data, args.block_s)
    judge(rows)
    print()
    print_table(rows)
    print(
        f"\nfound = truth events matched; +spur. = unmatched detections per truth event; err = "
        f"|detected − truth|; delay = coach's median t_detected − t; cost = wall time per minute "
        f"(contacts) or hour (angles) of recording, {args.block_s:g}-s blocks for coach; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
