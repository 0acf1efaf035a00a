"""Pelvic angle accuracy on the real rbds001_run2p5 recording (optical truth, force-plate events).

Runs coach.stream.pelvis_orientation.PelvisTracker on sessions/rbds001_run2p5/pelvis.csv in 1-s
blocks and compares, per stance (truth events), the contralateral pelvic drop and the rotation
peak-to-peak (design.md section 3) with the same measures on truth/.../pelvis_angles.csv; also
sample-wise RMSE of the angles after removing each signal's mean (the optical zero is the
standing trial, the tracker's zero the mean running posture: offsets are not comparable).

Usage: .venv/bin/python benchmarks/pelvis_angles_real.py [path/to/shared/data]
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.sources.csv_folder import read_session
from coach.stream.pelvis_orientation import PelvisAngles, PelvisTracker
from coach.types import FloatArray, Location, SampleBlock

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SESSION = "rbds001_run2p5"


@dataclass(frozen=True)
class StanceMetrics:
    t_ic: FloatArray
    side: list[str]
    drop_deg: FloatArray
    rotation_deg: FloatArray


def read_truth(data: Path) -> tuple[dict[str, FloatArray], list[tuple[float, str, str]]]:
    angles = np.genfromtxt(
        data / "truth" / SESSION / "pelvis_angles.csv", delimiter=",", names=True
    )
    columns = {name: np.asarray(angles[name], float) for name in angles.dtype.names or ()}
    events = []
    for line in (data / "truth" / SESSION / "events.csv").read_text().splitlines()[1:]:
        t, kind, side = line.split(",")
        events.append((float(t), kind, side))
    return columns, events


def run_tracker(block: SampleBlock, block_s: float = 1.0) -> PelvisAngles:
    rate = 1.0 / float(np.median(np.diff(block.t)))
    tracker = PelvisTracker(rate)
    step = max(1, round(block_s * rate))
    parts = [tracker.update(block.slice(i, i + step)) for i in range(0, len(block), step)]
    return PelvisAngles(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in PelvisAngles.__slots__)
    )


def stance_metrics(
    t: FloatArray, obliquity: FloatArray, rotation: FloatArray, events: list[tuple[float, str, str]]
) -> StanceMetrics:
    """Drop (IC→TO of the same side) and rotation peak-to-peak (IC→next IC) per stance."""
    ics = [(te, side) for te, kind, side in events if kind == "initial_contact"]
    tos = [(te, side) for te, kind, side in events if kind == "toe_off"]
    out_t, out_side, drops, rots = [], [], [], []
    for (t_ic, side), (t_next, _) in itertools.pairwise(ics):
        t_to = next((te for te, s in tos if s == side and te > t_ic), None)
        if t_to is None or t_to > t_next + 0.2:
            continue
        stance = (t >= t_ic) & (t <= t_to)
        step = (t >= t_ic) & (t <= t_next)
        o_ic = float(np.interp(t_ic, t, obliquity))
        o = obliquity[stance]
        r = np.concatenate(
            [[np.interp(t_ic, t, rotation)], rotation[step], [np.interp(t_next, t, rotation)]]
        )
        if not (np.isfinite(o).all() and np.isfinite(r).all() and np.isfinite(o_ic)) or o.size == 0:
            drop, rot = np.nan, np.nan
        else:
            drop = float(o.max() - o_ic) if side == "right" else float(o_ic - o.min())
            rot = float(r.max() - r.min())
        out_t.append(t_ic)
        out_side.append(side)
        drops.append(drop)
        rots.append(rot)
    return StanceMetrics(np.array(out_t), out_side, np.array(drops), np.array(rots))


def evaluate(data: Path = DATA, block_s: float = 1.0) -> dict[str, float]:
    session = read_session(data / "sessions" / SESSION)
    pelvis = session.blocks[Location.PELVIS]
    truth, events = read_truth(data)
    est = run_tracker(pelvis, block_s)
    first_valid = float(est.t[np.argmax(est.valid)]) if est.valid.any() else np.inf
    truth_m = stance_metrics(truth["t"], truth["obliquity_deg"], truth["rotation_deg"], events)
    est_m = stance_metrics(est.t, est.obliquity_deg, est.rotation_deg, events)
    ok = np.isfinite(est_m.drop_deg) & np.isfinite(truth_m.drop_deg)
    drop_err = est_m.drop_deg[ok] - truth_m.drop_deg[ok]
    rot_err = est_m.rotation_deg[ok] - truth_m.rotation_deg[ok]
    result = {
        "first_valid_s": first_valid,
        "n_stances": float(ok.sum()),
        "n_stances_total": float(ok.size),
        "drop_rmse_deg": float(np.sqrt(np.mean(drop_err**2))),
        "drop_bias_deg": float(drop_err.mean()),
        "rotation_rmse_deg": float(np.sqrt(np.mean(rot_err**2))),
        "rotation_bias_deg": float(rot_err.mean()),
        "truth_drop_mean_deg": float(truth_m.drop_deg[ok].mean()),
        "truth_rotation_mean_deg": float(truth_m.rotation_deg[ok].mean()),
    }
    valid_t = est.t[est.valid]
    for name in ("obliquity_deg", "rotation_deg", "tilt_deg"):
        inside = (truth["t"] >= valid_t[0]) & (truth["t"] <= valid_t[-1])
        e = np.interp(truth["t"][inside], valid_t, getattr(est, name)[est.valid])
        r = truth[name][inside]
        result[f"{name[:-4]}_rmse_demeaned_deg"] = float(
            np.sqrt(np.mean(((e - e.mean()) - (r - r.mean())) ** 2))
        )
    return result


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA
    result = evaluate(data)
    print(f"pelvic angles on {SESSION} (PelvisTracker, 1-s blocks)")
    for key, value in result.items():
        print(f"  {key:28s} {value:8.3f}")


if __name__ == "__main__":
    main()
