"""Accuracy of the streaming core on the simulator and on the real recordings in ../shared/data.

Prints, per scenario: initial contact (IC) and toe-off (TO) detection rate, spurious rate,
timing error (median, p95, bias), detection delay (t_detected - t), side correctness, and the
per-stance RMSE of pelvic drop and rotation against the truth (design.md section 3 definitions).

    .venv/bin/python benchmarks/core_accuracy.py [--seeds 20] [--duration-s 90] [--real-only]

Simulator runs: random mounts, realistic noise, 1 % packet loss, up to 100 ppm clock drift. The
first ``--warmup-s`` seconds (mount and axis calibration) are not scored; that is stated.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.config import CoachConfig
from coach.evaluation import (
    EventScore,
    match_events,
    match_strides,
    metric_rmse,
    read_truth_angles,
    read_truth_events,
    spectral_cadence_spm,
    truth_strides,
)
from coach.runtime import RunResult, replay_session
from coach.sources.csv_folder import CsvSession, read_session
from coach.sources.simulate import SimulationParams, simulate
from coach.types import EventKind, Location, Stride

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIG = CoachConfig()


@dataclass
class Row:
    name: str
    ic: EventScore
    to: EventScore | None
    drop_rmse: float = float("nan")
    rotation_rmse: float = float("nan")
    n_stances: int = 0
    note: str = ""


def run(session: CsvSession, sensors: tuple[Location, ...] | None = None) -> RunResult:
    if sensors is not None:
        session = CsvSession(
            {k: v for k, v in session.blocks.items() if k in sensors}, session.meta
        )
    return replay_session(CONFIG, session, block_s=1.0)


def score(
    name: str,
    result: RunResult,
    truth_events: list,
    truth_stance: list[Stride],
    span: tuple[float, float],
    window_s: float,
    use_side: bool = True,
    note: str = "",
) -> tuple[Row, list[tuple[Stride, Stride]]]:
    ic = match_events(
        result.events, truth_events, EventKind.INITIAL_CONTACT, window_s, span, use_side
    )
    has_to = any(e.kind is EventKind.TOE_OFF for e in result.events)
    to = (
        match_events(result.events, truth_events, EventKind.TOE_OFF, window_s, span, use_side)
        if has_to
        else None
    )
    pairs = [
        p
        for p in match_strides(result.strides, truth_stance, window_s)
        if span[0] <= p[1].t <= span[1]
    ]
    drop, n = metric_rmse(pairs, "pelvic_drop_deg")
    rotation, _ = metric_rmse(pairs, "pelvic_rotation_deg")
    return Row(name, ic, to, drop, rotation, n, note), pairs


def simulator_rows(seeds: int, duration_s: float, warmup_s: float, rate_hz: float) -> list[Row]:
    ics: list[EventScore] = []
    tos: list[EventScore] = []
    pelvis_only: list[EventScore] = []
    pairs: list[tuple[Stride, Stride]] = []
    window = 0.15
    for seed in range(seeds):
        params = SimulationParams(
            duration_s=duration_s,
            seed=seed,
            rate_hz=rate_hz,
            mount="random",
            noise="realistic",
            packet_loss=0.01,
            clock_drift_ppm=100.0,
            pelvic_drop_deg=float(np.random.default_rng(seed).uniform(3, 9)),
        )
        sim = simulate(params)
        session = CsvSession(sim.blocks)
        span = (warmup_s, duration_s - 1.0)
        row, seed_pairs = score("sim", run(session), sim.events, sim.strides, span, window)
        ics.append(row.ic)
        if row.to is not None:
            tos.append(row.to)
        pairs.extend(seed_pairs)
        pelvis = run(session, (Location.PELVIS,))
        pelvis_only.append(
            match_events(pelvis.events, sim.events, EventKind.INITIAL_CONTACT, window, span)
        )
    drop, n = metric_rmse(pairs, "pelvic_drop_deg")
    rotation, _ = metric_rmse(pairs, "pelvic_rotation_deg")
    label = f"sim {rate_hz:g} Hz, {seeds} seeds x {duration_s:g} s"
    return [
        Row(
            f"{label}: 3 sensors",
            EventScore.combine(ics),
            EventScore.combine(tos) if tos else None,
            drop,
            rotation,
            n,
        ),
        Row(f"{label}: pelvis only", EventScore.combine(pelvis_only), None),
    ]


def real_rows(warmup_s: float) -> list[Row]:
    rows: list[Row] = []
    if not (DATA / "sessions").is_dir():
        print(f"(real recordings not found at {DATA}: skipped)")
        return rows
    sessions = DATA / "sessions"
    truth = DATA / "truth"

    name = "rbds001_run2p5"
    session = read_session(sessions / name)
    events = read_truth_events(truth / name)
    stance = truth_strides(events, read_truth_angles(truth / name))
    end = max(float(b.t[-1]) for b in session.blocks.values())
    rows.append(score(f"{name}: 3 sensors", run(session), events, stance, (warmup_s, end), 0.15)[0])
    rows.append(
        score(
            f"{name}: pelvis only",
            run(session, (Location.PELVIS,)),
            events,
            stance,
            (warmup_s, end),
            0.15,
        )[0]
    )

    pooled: dict[str, list[EventScore]] = {"ipol feet": [], "ipol lower back": [], "alcantara": []}
    for folder in sorted(sessions.glob("ipol_*")):
        session = read_session(folder)
        events = read_truth_events(truth / folder.name)
        end = max(float(b.t[-1]) for b in session.blocks.values())
        feet = run(session, (Location.LEFT_FOOT, Location.RIGHT_FOOT))
        pooled["ipol feet"].append(
            match_events(feet.events, events, EventKind.INITIAL_CONTACT, 0.25, (warmup_s, end))
        )
        back = run(session, (Location.PELVIS,))
        pooled["ipol lower back"].append(
            match_events(back.events, events, EventKind.INITIAL_CONTACT, 0.25, (warmup_s, end))
        )
    for folder in sorted(sessions.glob("alcantara_sub2_*")):
        session = read_session(folder)
        events = read_truth_events(truth / folder.name)
        end = max(float(b.t[-1]) for b in session.blocks.values())
        result = run(session)
        pooled["alcantara"].append(
            match_events(
                result.events, events, EventKind.INITIAL_CONTACT, 0.15, (1.5, end), use_side=False
            )
        )
    for label, scores in pooled.items():
        if scores:
            rows.append(
                Row(label, EventScore.combine(scores), None, note=f"{len(scores)} sessions")
            )
    return rows


def cadence_rows() -> list[str]:
    lines = []
    sessions = DATA / "sessions"
    if not sessions.is_dir():
        return lines
    for pattern in ("sisfall_*", "hugadb_running_*", "alcantara_sampletest"):
        errors = []
        for folder in sorted(sessions.glob(pattern)):
            session = read_session(folder)
            result = run(session)
            cadences = [s.cadence_spm for s in result.strides if s.cadence_spm is not None]
            if not cadences:
                errors.append(float("nan"))
                continue
            location = (
                Location.PELVIS if Location.PELVIS in session.blocks else next(iter(session.blocks))
            )
            spectral = spectral_cadence_spm(session.blocks[location])
            if location is not Location.PELVIS:
                spectral_stride = spectral
                spectral = (
                    spectral_stride * 2
                    if abs(spectral_stride * 2 - np.median(cadences))
                    < abs(spectral_stride - np.median(cadences))
                    else spectral_stride
                )
            errors.append(100 * (np.median(cadences) - spectral) / spectral)
        if errors:
            e = np.array(errors)
            lines.append(
                f"  {pattern:<22} {len(e):>3} sessions: detected vs spectral cadence, "
                f"median |diff| {np.nanmedian(np.abs(e)):.1f} %, "
                f"worst {np.nanmax(np.abs(e)):.1f} %, "
                f"no strides in {int(np.isnan(e).sum())}"
            )
    return lines


def print_rows(rows: list[Row]) -> None:
    header = (
        f"{'scenario':<44} {'IC found':>8} {'spur.':>6} {'med ms':>7} {'p95 ms':>7} {'bias':>6} "
        f"{'delay':>6} {'side':>6} | {'TO found':>8} {'med ms':>7} | "
        f"{'drop':>5} {'rot':>5} {'n':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        to = (
            f"{100 * r.to.found_fraction:7.1f}% {r.to.median_abs_ms():7.1f}"
            if r.to is not None
            else f"{'—':>8} {'—':>7}"
        )
        print(
            f"{r.name:<44} {100 * r.ic.found_fraction:7.1f}% {100 * r.ic.spurious_fraction:5.1f}% "
            f"{r.ic.median_abs_ms():7.1f} {r.ic.p95_abs_ms():7.1f} {r.ic.bias_ms():6.1f} "
            f"{r.ic.median_delay_ms():6.1f} {100 * r.ic.side_fraction():5.1f}% | {to} | "
            f"{r.drop_rmse:5.2f} {r.rotation_rmse:5.2f} {r.n_stances:>4}  {r.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--duration-s", type=float, default=90.0)
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--real-only", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[Row] = []
    if not args.real_only:
        for rate in (200.0, 100.0):
            rows.extend(simulator_rows(args.seeds, args.duration_s, args.warmup_s, rate))
    rows.extend(real_rows(args.warmup_s))
    print_rows(rows)
    print("\nCadence on recordings without contact truth:")
    print("\n".join(cadence_rows()))
    print(
        f"\n(drop/rot = per-stance RMSE in degrees; delay = median t_detected - t in ms; "
        f"{time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
