"""How much the synthetic runner looks like real running around each foot event.

Usage: .venv/bin/python benchmarks/sim_realism.py [--duration-s 60] [--plot /tmp/sim_realism.png]

Event-locked averages (±250 ms around initial contact and around toe-off, per side) of

* the shank sagittal angular velocity ``ω_y`` (segment frame: x anterior, y left, z up, so the
  forward swing of the foot is negative),
* the shank specific-force magnitude ``|a|``,
* the pelvis vertical specific force (segment z axis),

on the real RBDS001 treadmill run at 2.5 m/s (Fukuchi et al. 2017; force-plate events, IMU
signals computed from optical markers, so nothing above ~15 Hz) and on the simulator at the same
speed, cadence and contact time (``noise="none"``, tilted mounts). Every sensor is first rotated
into its segment frame (RBDS: ``R_mount_sensor_to_anatomical`` of truth_meta.toml; simulator:
``SimulatedRun.mounts``), and both are low-passed at 15 Hz (zero-phase) so that the simulator's
impact transients, which RBDS cannot contain, do not count against it.

Printed: per signal and event, the RMS difference of the averaged curves (and the real curve's
RMS about its mean, for scale), and the times (ms from the event) of the key features: zero
crossings and extrema of ``ω_y``, the extrema of ``|a|`` and of the pelvis vertical force.
"""

from __future__ import annotations

import argparse
import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from coach.sources.csv_folder import read_session
from coach.sources.simulate import SimulationParams, simulate
from coach.types import FloatArray, Location, SampleBlock

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RBDS = "rbds001_run2p5"
RATE_HZ = 200.0
HALF_WINDOW_S = 0.25
LOWPASS_HZ = 15.0
SKIP_S = 2.0  # start of each record left out (simulator warm-up, RBDS capture start)
LAGS = np.arange(-round(HALF_WINDOW_S * RATE_HZ), round(HALF_WINDOW_S * RATE_HZ) + 1) / RATE_HZ
SIDES = ("left", "right")
KINDS = ("initial_contact", "toe_off")
SIGNALS = ("shank_gy", "shank_acc", "pelvis_az")


@dataclass(frozen=True)
class Recording:
    """Segment-frame signals and truth events of one run."""

    name: str
    signals: dict[tuple[str, str], tuple[FloatArray, FloatArray]]  # (signal, side) -> (t, x)
    events: dict[tuple[str, str], FloatArray]  # (kind, side) -> times, s


def lowpass(x: FloatArray, fs: float) -> FloatArray:
    sos = butter(4, LOWPASS_HZ, fs=fs, output="sos")
    return np.asarray(sosfiltfilt(sos, x, axis=0), dtype=np.float64)


def segment_signals(
    blocks: dict[Location, SampleBlock], mounts: dict[Location, FloatArray]
) -> dict[tuple[str, str], tuple[FloatArray, FloatArray]]:
    """Rotate into the segment frames (v_segment = M v_sensor), low-pass, pick the signals."""
    out: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
    for location, block in blocks.items():
        assert block.gyr is not None
        fs = 1.0 / float(np.median(np.diff(block.t)))
        acc = lowpass(block.acc @ mounts[location].T, fs)
        gyr = lowpass(block.gyr @ mounts[location].T, fs)
        if location is Location.PELVIS:
            for side in SIDES:  # pelvis signal locked to either foot's events
                out[("pelvis_az", side)] = (block.t, acc[:, 2])
        else:
            side = location.side.value
            out[("shank_gy", side)] = (block.t, gyr[:, 1])
            out[("shank_acc", side)] = (block.t, np.linalg.norm(acc, axis=1))
    return out


def load_rbds() -> Recording:
    session = read_session(DATA / "sessions" / RBDS)
    with open(DATA / "truth" / RBDS / "truth_meta.toml", "rb") as f:
        meta = tomllib.load(f)["synthetic_sensor_truth"]
    mounts = {
        loc: np.asarray(meta[loc.value]["R_mount_sensor_to_anatomical"], dtype=np.float64)
        for loc in session.blocks
    }
    events: dict[tuple[str, str], list[float]] = {(k, s): [] for k in KINDS for s in SIDES}
    with open(DATA / "truth" / RBDS / "events.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            events[(row["kind"], row["side"])].append(float(row["t"]))
    return Recording(
        "RBDS001",
        segment_signals(session.blocks, mounts),
        {key: np.asarray(v) for key, v in events.items()},
    )


def rbds_gait(rec: Recording) -> tuple[float, float]:
    """(cadence spm, contact time s) of the real run, from its truth events."""
    ics = np.sort(np.concatenate([rec.events[("initial_contact", s)] for s in SIDES]))
    cadence = 60.0 / float(np.median(np.diff(ics)))
    contacts = []
    for side in SIDES:
        tos = rec.events[("toe_off", side)]
        for ic in rec.events[("initial_contact", side)]:
            after = tos[(tos > ic) & (tos < ic + 0.6)]
            if after.size:
                contacts.append(after[0] - ic)
    return cadence, float(np.median(contacts))


def load_simulator(duration_s: float, cadence: float, speed: float, seed: int) -> Recording:
    run = simulate(
        SimulationParams(
            duration_s=duration_s,
            speed_mps=speed,
            cadence_spm=cadence,
            noise="none",
            mount="tilted",
            seed=seed,
        )
    )
    events: dict[tuple[str, str], list[float]] = {(k, s): [] for k in KINDS for s in SIDES}
    for e in run.events:
        events[(e.kind.value, e.side.value)].append(e.t)
    return Recording(
        f"sim {speed:g} m/s",
        segment_signals(run.blocks, run.mounts),
        {key: np.asarray(v) for key, v in events.items()},
    )


def event_locked(rec: Recording, signal: str, kind: str, side: str) -> FloatArray:
    """Mean of the signal at event + LAGS over the events whose window lies inside the data."""
    t, x = rec.signals[(signal, side)]
    times = rec.events[(kind, side)]
    times = times[(times - HALF_WINDOW_S >= max(t[0], SKIP_S)) & (times + HALF_WINDOW_S <= t[-1])]
    rows = [np.interp(e + LAGS, t, x) for e in times]
    return np.asarray(np.mean(rows, axis=0), dtype=np.float64)


def zero_crossings(y: FloatArray) -> list[tuple[float, str]]:
    """(ms, '+' rising / '-' falling) where the curve crosses zero, linearly interpolated."""
    out = []
    for i in np.flatnonzero(np.sign(y[:-1]) * np.sign(y[1:]) < 0):
        frac = y[i] / (y[i] - y[i + 1])
        out.append((1000.0 * (LAGS[i] + frac / RATE_HZ), "+" if y[i + 1] > y[i] else "-"))
    return out


def extrema(y: FloatArray, min_prominence: float) -> list[tuple[float, str, float]]:
    """(ms, 'max'/'min', value) of interior local extrema standing out by ``min_prominence``."""
    from scipy.signal import find_peaks

    out = []
    for sign, label in ((1.0, "max"), (-1.0, "min")):
        peaks, _ = find_peaks(sign * y, prominence=min_prominence)
        out += [(1000.0 * LAGS[p], label, float(y[p])) for p in peaks]
    return sorted(out)


def feature(y: FloatArray, kind: str, low_ms: float, high_ms: float, pick: str = "first") -> float:
    """Time (ms) of the max, min, max curvature, or first/last rising/falling zero in a window."""
    ms = 1000.0 * LAGS
    inside = (ms >= low_ms) & (ms <= high_ms)
    if kind == "curv":  # fastest rise of the slope: onset of a rise, on ω smoothed over 20 ms
        smooth = np.convolve(y, np.ones(5) / 5, mode="same")
        values = np.where(inside, np.gradient(np.gradient(smooth)), -np.inf)
        return float(ms[int(np.argmax(values))])
    if kind in ("max", "min"):
        values = np.where(inside, y if kind == "max" else -y, -np.inf)
        return float(ms[int(np.argmax(values))])
    hits = [t for t, d in zero_crossings(y) if low_ms <= t <= high_ms and d == kind]
    if not hits:
        return float("nan")
    return hits[0] if pick == "first" else hits[-1]


#: Key features: (label, signal, event kind, feature kind, window ms, pick).
FEATURES: tuple[tuple[str, str, str, str, float, float, str], ...] = (
    ("ω swing peak (min) before IC", "shank_gy", "initial_contact", "min", -250, 0, "first"),
    ("ω rising zero before IC", "shank_gy", "initial_contact", "+", -150, 60, "last"),
    ("ω stance max after IC", "shank_gy", "initial_contact", "max", 0, 200, "first"),
    ("ω stance min before TO", "shank_gy", "toe_off", "min", -150, 50, "first"),
    ("ω swing-back onset (max ω'') near TO", "shank_gy", "toe_off", "curv", -100, 100, "first"),
    ("ω swing-back max after TO", "shank_gy", "toe_off", "max", 0, 200, "first"),
    ("ω falling zero after TO", "shank_gy", "toe_off", "-", 100, 250, "first"),
    ("|a| max after IC", "shank_acc", "initial_contact", "max", -20, 100, "first"),
    ("|a| max near TO", "shank_acc", "toe_off", "max", -150, 150, "first"),
    ("pelvis az max after IC", "pelvis_az", "initial_contact", "max", 0, 250, "first"),
    ("pelvis az min after TO", "pelvis_az", "toe_off", "min", -50, 250, "first"),
)


def compare(real: Recording, sims: list[Recording]) -> dict[str, dict[tuple[str, str], FloatArray]]:
    curves: dict[str, dict[tuple[str, str], FloatArray]] = {}
    for rec in [real, *sims]:
        curves[rec.name] = {
            (signal, kind): np.mean(
                [event_locked(rec, signal, kind, side) for side in SIDES], axis=0
            )
            for signal in SIGNALS
            for kind in KINDS
        }
    print("\nRMS difference of the event-locked means (both sides pooled), 15 Hz low-passed")
    header = f"{'signal':10s} {'event':16s} {'real RMS':>9s}" + "".join(
        f" {s.name:>14s}" for s in sims
    )
    print(header + "   (rad/s or m/s²)")
    for signal in SIGNALS:
        for kind in KINDS:
            ref = curves[real.name][(signal, kind)]
            row = f"{signal:10s} {kind:16s} {np.std(ref):9.2f}"
            for sim in sims:
                diff = curves[sim.name][(signal, kind)] - ref
                row += f" {np.sqrt(np.mean(diff**2)):14.2f}"
            print(row)
    print("\nkey features, ms from the event (value)")
    print(f"{'feature':34s} {'real':>14s}" + "".join(f" {s.name:>14s}" for s in sims))
    for label, signal, kind, feat, low, high, pick in FEATURES:
        row = f"{label:34s}"
        for rec in [real, *sims]:
            y = curves[rec.name][(signal, kind)]
            ms = feature(y, feat, low, high, pick)
            value = np.interp(ms / 1000.0, LAGS, y) if np.isfinite(ms) else np.nan
            row += f" {ms:+6.0f} ({value:+5.1f})"
        print(row)
    return curves


def per_side_features(rec: Recording) -> None:
    print(f"\n{rec.name}: ω_y zero crossings and extrema per side (ms from the event)")
    for kind in KINDS:
        for side in SIDES:
            y = event_locked(rec, "shank_gy", kind, side)
            zc = " ".join(f"{t:+.0f}{d}" for t, d in zero_crossings(y))
            ex = " ".join(f"{t:+.0f}{lab}({v:+.1f})" for t, lab, v in extrema(y, 0.5))
            print(f"  {kind:16s} {side:5s} zeros: {zc:24s} extrema: {ex}")


def plot(curves: dict[str, dict[tuple[str, str], FloatArray]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SIGNALS), len(KINDS), figsize=(11, 9), sharex=True)
    for i, signal in enumerate(SIGNALS):
        for j, kind in enumerate(KINDS):
            ax = axes[i, j]
            for name, c in curves.items():
                ax.plot(1000 * LAGS, c[(signal, kind)], label=name)
            ax.axvline(0, color="k", lw=0.5)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"{signal} around {kind}", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("ms from event")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"\nplot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=None, help="save a PNG of the curves")
    parser.add_argument(
        "--speeds", type=float, nargs="*", default=[], help="extra simulator speeds (m/s)"
    )
    args = parser.parse_args()
    real = load_rbds()
    cadence, contact = rbds_gait(real)
    print(f"RBDS001 2.5 m/s: cadence {cadence:.1f} spm, contact {1000 * contact:.0f} ms")
    sims = [load_simulator(args.duration_s, cadence, 2.5, args.seed)]
    sims += [load_simulator(args.duration_s, cadence, v, args.seed) for v in args.speeds]
    for sim in sims:
        sim_cadence, sim_contact = rbds_gait(sim)
        print(f"{sim.name}: cadence {sim_cadence:.1f} spm, contact {1000 * sim_contact:.0f} ms")
    curves = compare(real, sims)
    for rec in [real, sims[0]]:
        per_side_features(rec)
    if args.plot is not None:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
