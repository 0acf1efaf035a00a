"""Accuracy of the pelvis-only contact detector on the real recordings in ../shared/data.

Usage: .venv/bin/python benchmarks/pelvis_contacts_real.py [--data PATH] [--block N] [-v]

The detector reads only ``sessions/<name>/pelvis.csv`` (streamed in blocks of ``--block``
samples); ``truth/`` is used for scoring only. Per dataset it prints: IC detection rate,
spurious rate, median and p95 absolute timing error, mean bias (detected - truth), side correct %
(among steps whose side was named; the named share is shown too), median t_detected - t(truth);
for SisFall the cadence against the reference cadence; for alcantara_sampletest the cadence
against the dominant step frequency of |acc|.

Matching: each reference IC is paired with the nearest unused detected IC within 40 % of the
median reference step interval. Detections inside the scored span (first reference IC - 0.3 s
to last + 0.3 s) that pair with nothing are spurious; spurious rate = spurious / reference ICs.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np

from coach.config import DetectionConfig
from coach.evaluation import EventScore, match_events, read_truth_events, spectral_cadence_spm
from coach.sources.csv_folder import read_session
from coach.stream.pelvis_contacts import PelvisContactDetector
from coach.types import EventKind, GaitEvent, Location, SampleBlock

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def line(name: str, s: EventScore) -> str:
    """One printed line of figures."""
    side = f"{100 * s.side_fraction():5.1f}% (named {s.side_known:3d})" if s.side_known else "  n/a"
    return (
        f"{name:24s} n={s.n_truth:4d} found={100 * s.found_fraction:5.1f}% "
        f"spurious={100 * s.spurious_fraction:5.1f}% |err| med={s.median_abs_ms():5.1f} "
        f"p95={s.p95_abs_ms():5.1f} ms bias={s.bias_ms():+6.1f} ms side={side} "
        f"delay med={s.median_delay_ms():5.1f} ms"
    )


def run_detector(block: SampleBlock, rate_hz: float, chunk: int) -> list[GaitEvent]:
    detector = PelvisContactDetector(rate_hz, DetectionConfig())
    events: list[GaitEvent] = []
    for start in range(0, len(block), chunk):
        events.extend(detector.update(block.slice(start, start + chunk)))
    return events


def score(events: list[GaitEvent], truth: list[GaitEvent]) -> EventScore:
    """Match ICs within 40 % of the median truth step, inside the truth span +- 0.3 s."""
    ics = [e for e in truth if e.kind is EventKind.INITIAL_CONTACT]
    times = np.array([e.t for e in ics])
    window = 0.4 * float(np.median(np.diff(times))) if times.size > 1 else 0.15
    span = (float(times[0]) - 0.3, float(times[-1]) + 0.3)
    return match_events(events, ics, EventKind.INITIAL_CONTACT, window, span, use_side=False)


def detector_cadence(events: list[GaitEvent]) -> float:
    t = np.array([e.t for e in events])
    if t.size < 3:
        return float("nan")
    steps = np.diff(t)
    steps = steps[(steps > 0.2) & (steps < 0.8)]
    return 60.0 / float(np.median(steps)) if steps.size else float("nan")


def speed_figures() -> None:
    """CPU time for one hour at 200 Hz in 1-s blocks, and per 4-sample live block."""
    from coach.sources.simulate import SimulationParams, simulate

    params = SimulationParams(
        duration_s=300.0, seed=1, rate_hz=200.0, sensors=(Location.PELVIS,), mount="random"
    )
    block = simulate(params).blocks[Location.PELVIS]
    for size in (200, 4):
        detector = PelvisContactDetector(200.0, DetectionConfig())
        pieces = [block.slice(i, i + size) for i in range(0, len(block), size)]
        start = time.process_time()
        for piece in pieces:
            detector.update(piece)
        spent = time.process_time() - start
        if size == 200:
            print(f"speed: {spent * 3600.0 / 300.0:.2f} s CPU per hour of 200 Hz in 1-s blocks")
        else:
            print(f"speed: {spent / len(pieces) * 1e3:.3f} ms CPU per 4-sample block")


def simulator_figures(chunk: int, verbose: bool) -> None:
    """Score simulated runs (random mounts, realistic noise) at 200 and 100 Hz."""
    from coach.sources.simulate import SimulationParams, simulate

    for rate in (200.0, 100.0):
        for gyro in (True, False):
            scores = []
            for seed in range(6):
                params = SimulationParams(
                    duration_s=60.0,
                    seed=seed,
                    rate_hz=rate,
                    cadence_spm=150.0 + 12.0 * seed,
                    speed_mps=2.5 + 0.3 * seed,
                    sensors=(Location.PELVIS,),
                    mount="random",
                    asymmetry=0.05 * (seed % 3),
                )
                run = simulate(params)
                block = run.blocks[Location.PELVIS]
                if not gyro:
                    block = SampleBlock(block.location, block.t, block.acc)
                events = run_detector(block, rate, chunk)
                s = score(events, [e for e in run.events if e.t > 1.2])
                if verbose:
                    print(line(f"  sim seed {seed} {rate:.0f} Hz", s))
                scores.append(s)
            label = f"simulator {rate:.0f} Hz {'gyro' if gyro else 'acc only'}"
            print(line(label, EventScore.combine(scores)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--sim", action="store_true", help="also score the simulator (random mounts, 200/100 Hz)"
    )
    args = parser.parse_args()
    speed_figures()
    if args.sim:
        simulator_figures(args.block, args.verbose)
    sessions = args.data / "sessions"
    groups: dict[str, list[EventScore]] = {}
    sisfall: list[tuple[str, float, float, float]] = []
    for folder in sorted(sessions.iterdir()):
        name = folder.name
        if not (folder / "pelvis.csv").is_file():
            continue
        session = read_session(folder)
        block = session.blocks[Location.PELVIS]
        rate = float(1.0 / np.median(np.diff(block.t)))
        events = run_detector(block, rate, args.block)
        truth_dir = args.data / "truth" / name
        if name.startswith("sisfall"):
            meta = tomllib.loads((truth_dir / "truth_meta.toml").read_text(encoding="utf-8"))
            duration = float(block.t[-1] - block.t[0])
            sisfall.append(
                (
                    name,
                    float(meta["reference_cadence_spm"]),
                    detector_cadence(events),
                    60.0 * len(events) / duration,
                )
            )
            continue
        if name == "alcantara_sampletest":
            print(
                f"{name:24s} detector cadence {detector_cadence(events):6.1f} spm, "
                f"dominant step frequency of |acc| {spectral_cadence_spm(block):6.1f} spm, "
                f"{len(events)} ICs in {block.t[-1] - block.t[0]:.1f} s"
            )
            continue
        if not (truth_dir / "events.csv").is_file():
            continue
        s = score(events, read_truth_events(truth_dir))
        if args.verbose:
            print(line(name, s))
        group = name.split("_")[0] + ("" if name.startswith("rbds") else "_*")
        groups.setdefault(group, []).append(s)
    for group, scores in groups.items():
        print(line(group, EventScore.combine(scores)))
    if sisfall:
        errors = []
        for name, ref, cad, count_cad in sisfall:
            errors.append(cad - ref)
            if args.verbose:
                print(
                    f"  {name:24s} ref {ref:6.1f} detector {cad:6.1f} (count {count_cad:6.1f}) spm"
                )
        err = np.abs(np.asarray(errors))
        print(
            f"{'sisfall_*':24s} n={len(sisfall)} cadence |err| median {np.median(err):.1f} spm, "
            f"max {np.max(err):.1f} spm, within 3 spm: {np.mean(err <= 3) * 100:.0f}%"
        )


if __name__ == "__main__":
    main()
