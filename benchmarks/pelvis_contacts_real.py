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
import csv
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

from coach.config import DetectionConfig
from coach.sources.csv_folder import read_session
from coach.stream.pelvis_contacts import PelvisContactDetector
from coach.types import GaitEvent, Location, SampleBlock, Side

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class Score:
    n_truth: int = 0
    found: int = 0
    spurious: int = 0
    errors: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    sided: int = 0
    side_ok: int = 0
    side_known_truth: int = 0

    def add(self, other: Score) -> None:
        self.n_truth += other.n_truth
        self.found += other.found
        self.spurious += other.spurious
        self.errors += other.errors
        self.delays += other.delays
        self.sided += other.sided
        self.side_ok += other.side_ok
        self.side_known_truth += other.side_known_truth

    def line(self, name: str) -> str:
        err = np.abs(np.asarray(self.errors)) * 1000
        bias = np.mean(self.errors) * 1000 if self.errors else float("nan")
        side = (
            f"{100 * self.side_ok / self.sided:5.1f}% "
            f"(named {100 * self.sided / max(self.side_known_truth, 1):3.0f}%)"
            if self.sided
            else ("   n/a" if not self.side_known_truth else "  none named")
        )
        return (
            f"{name:24s} n={self.n_truth:4d} found={100 * self.found / max(self.n_truth, 1):5.1f}% "
            f"spurious={100 * self.spurious / max(self.n_truth, 1):5.1f}% "
            f"|err| med={np.median(err) if err.size else float('nan'):5.1f} "
            f"p95={np.percentile(err, 95) if err.size else float('nan'):5.1f} ms "
            f"bias={bias:+6.1f} ms side={side} "
            f"delay med={np.median(self.delays) * 1000 if self.delays else float('nan'):5.1f} ms"
        )


def run_detector(block: SampleBlock, rate_hz: float, chunk: int) -> list[GaitEvent]:
    detector = PelvisContactDetector(rate_hz, DetectionConfig())
    events: list[GaitEvent] = []
    for start in range(0, len(block), chunk):
        events.extend(detector.update(block.slice(start, start + chunk)))
    return events


def read_truth(folder: Path) -> list[tuple[float, Side]]:
    path = folder / "events.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [
            (float(r["t"]), Side(r["side"]))
            for r in csv.DictReader(f)
            if r["kind"] == "initial_contact"
        ]


def score(events: list[GaitEvent], truth: list[tuple[float, Side]]) -> Score:
    s = Score(n_truth=len(truth))
    if not truth:
        return s
    t_truth = np.array([t for t, _ in truth])
    tol = 0.4 * float(np.median(np.diff(t_truth))) if len(truth) > 1 else 0.15
    used = np.zeros(len(events), dtype=bool)
    t_det = np.array([e.t for e in events])
    for t, side in truth:
        if side is not Side.UNKNOWN:
            s.side_known_truth += 1
        if not events:
            continue
        d = np.abs(t_det - t)
        d[used] = np.inf
        j = int(np.argmin(d))
        if d[j] > tol:
            continue
        used[j] = True
        s.found += 1
        s.errors.append(events[j].t - t)
        s.delays.append(events[j].t_detected - t)
        if side is not Side.UNKNOWN and events[j].side is not Side.UNKNOWN:
            s.sided += 1
            s.side_ok += events[j].side is side
    lo, hi = t_truth[0] - 0.3, t_truth[-1] + 0.3
    s.spurious = int(np.sum(~used & (t_det >= lo) & (t_det <= hi)))
    return s


def detector_cadence(events: list[GaitEvent]) -> float:
    t = np.array([e.t for e in events])
    if t.size < 3:
        return float("nan")
    steps = np.diff(t)
    steps = steps[(steps > 0.2) & (steps < 0.8)]
    return 60.0 / float(np.median(steps)) if steps.size else float("nan")


def spectral_cadence(block: SampleBlock, rate_hz: float) -> float:
    mag = np.linalg.norm(block.acc, axis=1)
    f, p = signal.welch(mag - mag.mean(), fs=rate_hz, nperseg=min(len(mag), 4096), nfft=65536)
    band = (f >= 1.0) & (f <= 4.5)
    return 60.0 * float(f[band][np.argmax(p[band])])


def simulator_figures(chunk: int, verbose: bool) -> None:
    """Score simulated runs (random mounts, realistic noise) at 200 and 100 Hz."""
    from coach.sources.simulate import SimulationParams, simulate

    for rate in (200.0, 100.0):
        for gyro in (True, False):
            total = Score()
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
                truth = [(e.t, e.side) for e in run.events if e.kind.value == "initial_contact"]
                s = score(events, [x for x in truth if x[0] > 1.2])
                if verbose:
                    print(s.line(f"  sim seed {seed} {rate:.0f} Hz"))
                total.add(s)
            label = f"simulator {rate:.0f} Hz {'gyro' if gyro else 'acc only'}"
            print(total.line(label))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--sim", action="store_true", help="also score the simulator (random mounts, 200/100 Hz)"
    )
    args = parser.parse_args()
    if args.sim:
        simulator_figures(args.block, args.verbose)
    sessions = args.data / "sessions"
    groups: dict[str, Score] = {}
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
                f"dominant step frequency of |acc| {spectral_cadence(block, rate):6.1f} spm, "
                f"{len(events)} ICs in {block.t[-1] - block.t[0]:.1f} s"
            )
            continue
        truth = read_truth(truth_dir)
        if not truth:
            continue
        s = score(events, truth)
        if args.verbose:
            print(s.line(name))
        group = name.split("_")[0] + ("" if name.startswith("rbds") else "_*")
        groups.setdefault(group, Score()).add(s)
    for group, s in groups.items():
        print(s.line(group))
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
