"""Accuracy of ShankContactDetector on the real recordings in ../shared/data.

Usage: .venv/bin/python benchmarks/shank_contacts_real.py [--block-s 1.0] [--rate 100]
[--per-session]

Per dataset group and event kind: detection rate (truth events matched), spurious rate
(detections not matched), median / 95th percentile |error|, mean bias (detected - truth) and
median / 95th percentile algorithmic delay (t_detected - t), all in ms. Matching: each truth
event of a side is paired with the nearest detection of the same side and kind within ±¼ step
(step = half the median IC-to-IC stride of that side). The first 2 strides of each side are
warm-up (axis calibration) and are left out of the rates. HuGaDB has no truth: the cadence from
detected ICs is compared with the dominant step frequency of the gyroscope spectrum. Then the
same figures on the simulator (when present), and the processing time per hour of data.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from coach.config import DetectionConfig
from coach.sources.csv_folder import read_session
from coach.stream.shank_contacts import ShankContactDetector
from coach.types import EventKind, GaitEvent, Location, SampleBlock, Side

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEGMENT_LOCATIONS = {
    "shank": (Location.LEFT_SHANK, Location.RIGHT_SHANK),
    "foot": (Location.LEFT_FOOT, Location.RIGHT_FOOT),
}


def run_detector(
    block: SampleBlock, segment: str, block_s: float, rate: float | None
) -> tuple[list[GaitEvent], float]:
    fs = 1.0 / float(np.median(np.diff(block.t)))
    if rate is not None and abs(rate - fs) > 1e-6:
        up, down = round(rate), round(fs)
        gyr = resample_poly(block.gyr, up, down, axis=0)
        acc = resample_poly(block.acc, up, down, axis=0)
        t = block.t[0] + np.arange(len(gyr)) / rate
        block = SampleBlock(block.location, t, acc, gyr)
        fs = rate
    det = ShankContactDetector(block.location.side, fs, DetectionConfig(), segment=segment)  # type: ignore[arg-type]
    step = max(1, round(block_s * fs))
    events: list[GaitEvent] = []
    for i in range(0, len(block), step):
        events += det.update(block.slice(i, i + step))
    return events, fs


def read_truth(name: str) -> list[tuple[float, str, str]]:
    path = DATA / "truth" / name / "events.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [(float(r["t"]), r["kind"], r["side"]) for r in csv.DictReader(f)]


def match(truth: np.ndarray, det: np.ndarray, window: float) -> tuple[list[float], int, int]:
    """Greedy nearest matching; returns errors (det - truth), matched truth, matched det."""
    errors: list[float] = []
    used: set[int] = set()
    for tt in truth:
        if det.size == 0:
            break
        order = np.argsort(np.abs(det - tt))
        for j in order:
            if abs(det[j] - tt) > window:
                break
            if j not in used:
                used.add(int(j))
                errors.append(float(det[j] - tt))
                break
    return errors, len(errors), len(used)


class Tally:
    def __init__(self) -> None:
        self.n_truth = self.n_found = self.n_det = self.n_det_matched = 0
        self.errors: list[float] = []
        self.delays: list[float] = []

    def row(self, label: str) -> str:
        if self.n_truth == 0:
            return f"{label:34s} (no truth)"
        e = np.abs(np.array(self.errors)) * 1000 if self.errors else np.array([np.nan])
        bias = np.mean(self.errors) * 1000 if self.errors else np.nan
        delay = np.median(self.delays) * 1000 if self.delays else np.nan
        delay95 = np.percentile(self.delays, 95) * 1000 if self.delays else np.nan
        spurious = 1 - self.n_det_matched / self.n_det if self.n_det else 0.0
        return (
            f"{label:34s} {self.n_found:4d}/{self.n_truth:<4d}"
            f" {100 * self.n_found / self.n_truth:6.1f}%"
            f" {100 * spurious:6.1f}% {np.median(e):7.1f} {np.percentile(e, 95):7.1f}"
            f" {bias:+7.1f} {delay:7.1f} {delay95:7.1f}"
        )


def evaluate(
    names: list[str], segment: str, block_s: float, rate: float | None, per_session: bool = False
) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for name in names:
        session = read_session(DATA / "sessions" / name)
        truth = read_truth(name)
        own: dict[str, Tally] = defaultdict(Tally)
        for loc in SEGMENT_LOCATIONS[segment]:
            block = session.blocks.get(loc)
            if block is None or block.gyr is None:
                continue
            events, _ = run_detector(block, segment, block_s, rate)
            score(tallies, events, truth, loc.side.value)
            score(own, events, truth, loc.side.value)
        if per_session:
            for kind in ("initial_contact", "toe_off"):
                print(own[kind].row(f"  {name} {'IC' if kind == 'initial_contact' else 'TO'}"))
    return tallies


def score(
    tallies: dict[str, Tally],
    events: list[GaitEvent],
    truth: list[tuple[float, str, str]],
    side: str,
) -> None:
    """Add one sensor's events, matched against the truth of its side, to the tallies."""
    ics = np.array(sorted(t for t, k, s in truth if s == side and k == "initial_contact"))
    if ics.size < 4:
        return
    stride = float(np.median(np.diff(ics)))
    window = stride / 2 / 4
    start = ics[2] - window  # warm-up: first two strides
    end = max(t for t, _, s in truth if s == side) + window
    for kind in (EventKind.INITIAL_CONTACT, EventKind.TOE_OFF):
        tt = np.array(sorted(t for t, k, s in truth if s == side and k == kind.value))
        tt = tt[tt >= start]
        dets = [e for e in events if e.kind == kind and start <= e.t <= end]
        dt = np.array([e.t for e in dets])
        errors, found, used = match(tt, dt, window)
        tally = tallies[kind.value]
        tally.n_truth += tt.size
        tally.n_found += found
        tally.n_det += dt.size
        tally.n_det_matched += used
        tally.errors += errors
        tally.delays += [e.t_detected - e.t for e in dets]


def simulator_figures(block_s: float) -> None:
    """Same figures on the synthetic runner (exact truth), when coach.sources.simulate exists."""
    try:
        from coach.sources.simulate import SimulationParams, simulate
    except ImportError:
        print("\n(simulator not available)")
        return
    print("\nsimulator, random mounts, realistic noise, 60 s runs (seeds 0-3)")
    cases = {
        "run 170 spm": {},
        "run 150 spm + walk 20-40 s": {"cadence_spm": 150.0, "walk_breaks": ((20.0, 40.0),)},
    }
    for rate in (200.0, 100.0):
        for label, extra in cases.items():
            tallies: dict[str, Tally] = defaultdict(Tally)
            for seed in range(4):
                params = SimulationParams(seed=seed, rate_hz=rate, mount="random", **extra)  # type: ignore[arg-type]
                run = simulate(params)
                truth = [(e.t, e.kind.value, e.side.value) for e in run.events]
                for loc in SEGMENT_LOCATIONS["shank"]:
                    block = run.blocks.get(loc)
                    if block is None:
                        continue
                    events, _ = run_detector(block, "shank", block_s, None)
                    score(tallies, events, truth, loc.side.value)
            for kind in ("initial_contact", "toe_off"):
                name = f"sim {rate:.0f} Hz {label} {'IC' if kind == 'initial_contact' else 'TO'}"
                print(tallies[kind].row(name))


def speed(block_s: float) -> None:
    """Processing time per hour of 200 Hz data, in 1-s blocks and in 5-sample blocks."""
    session = read_session(DATA / "sessions" / "rbds001_run2p5")
    block = session.blocks[Location.LEFT_SHANK]
    assert block.gyr is not None
    reps = int(np.ceil(3600 * 200 / len(block)))
    n = reps * len(block)
    hour = SampleBlock(
        block.location,
        np.arange(n) / 200.0,
        np.tile(block.acc, (reps, 1)),
        np.tile(block.gyr, (reps, 1)),
    )
    print("\nspeed (CPU time, one sensor, 200 Hz)")
    for size in (round(block_s * 200), 5):
        pieces = [hour.slice(i, i + size) for i in range(0, n, size)]
        if size == 5:
            pieces = pieces[: 12 * 60 * 40]  # 12 minutes is enough for the per-block cost
        det = ShankContactDetector(Side.LEFT, 200.0, DetectionConfig())
        start = time.process_time()
        for piece in pieces:
            det.update(piece)
        spent = time.process_time() - start
        hours = len(pieces) * size / 200.0 / 3600.0
        print(
            f"  {size:4d}-sample blocks: {spent / hours:6.3f} s per hour of data,"
            f" {1e3 * spent / len(pieces):6.3f} ms per block"
        )


def hugadb_cadence(block_s: float, rate: float | None) -> None:
    print("\nHuGaDB (no truth): cadence from detected ICs vs dominant gyro step frequency")
    print(
        f"{'session':24s} {'sensor':12s} {'n_IC':>5s} {'det spm':>8s}"
        f" {'spectral':>8s} {'diff %':>7s}"
    )
    names = sorted(p.name for p in (DATA / "sessions").glob("hugadb_running_*"))
    diffs = []
    for name in names:
        session = read_session(DATA / "sessions" / name)
        for segment, locs in SEGMENT_LOCATIONS.items():
            for loc in locs:
                block = session.blocks.get(loc)
                if block is None or block.gyr is None:
                    continue
                events, _fs = run_detector(block, segment, block_s, rate)
                ics = np.array([e.t for e in events if e.kind == EventKind.INITIAL_CONTACT])
                det_spm = 120.0 / np.median(np.diff(ics)) if ics.size > 2 else np.nan
                spectral = spectral_cadence(block)
                diff = 100 * (det_spm - spectral) / spectral
                diffs.append(diff)
                print(
                    f"{name:24s} {loc.value:12s} {ics.size:5d} {det_spm:8.1f}"
                    f" {spectral:8.1f} {diff:+7.1f}"
                )
    d = np.abs(np.array(diffs))
    print(
        f"median |diff| {np.nanmedian(d):.1f} %, max {np.nanmax(d):.1f} %, NaN {np.isnan(d).sum()}"
    )


def spectral_cadence(block: SampleBlock) -> float:
    """Steps per minute = 2 x the stride frequency, the strongest gyro peak in 0.6-2.2 Hz."""
    assert block.gyr is not None
    fs = 1.0 / float(np.median(np.diff(block.t)))
    g = block.gyr - block.gyr.mean(axis=0)
    n = 1 << int(np.ceil(np.log2(len(g) * 4)))
    power = (np.abs(np.fft.rfft(g * np.hanning(len(g))[:, None], n=n, axis=0)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(n, 1 / fs)
    band = (freqs >= 0.6) & (freqs <= 2.2)
    return float(120.0 * freqs[band][np.argmax(power[band])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--block-s", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=None, help="resample to this rate first")
    parser.add_argument("--per-session", action="store_true", help="a row per recording too")
    args = parser.parse_args()
    groups = {
        "rbds001_run2p5 (shank, running)": (["rbds001_run2p5"], "shank"),
        "ipol_* (foot, walking)": (
            sorted(p.name for p in (DATA / "sessions").glob("ipol_*")),
            "foot",
        ),
    }
    header = (
        f"{'dataset / event':34s} {'found':>9s} {'rate':>7s} {'spur.':>7s} {'med|e|':>7s}"
        f" {'p95|e|':>7s} {'bias':>7s} {'delay':>7s} {'dly p95':>7s}   (ms)"
    )
    print(header)
    for label, (names, segment) in groups.items():
        tallies = evaluate(names, segment, args.block_s, args.rate, args.per_session)
        for kind in ("initial_contact", "toe_off"):
            print(tallies[kind].row(f"{label} {'IC' if kind == 'initial_contact' else 'TO'}"))
    simulator_figures(args.block_s)
    hugadb_cadence(args.block_s, args.rate)
    speed(args.block_s)


if __name__ == "__main__":
    main()
