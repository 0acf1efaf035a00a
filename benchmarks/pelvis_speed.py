"""Processing cost of the pelvis pipeline (mount calibration + VQF + pelvic angles).

Feeds a synthetic running pelvis signal (spring-mass accelerations with flight, stride-frequency
obliquity/rotation, step-frequency tilt, noise, gyro bias, an arbitrary mount rotation, and a
slow change of direction every minute) to coach.stream.pelvis_orientation.PelvisTracker and
prints:

* the time to process one hour of data in 1-s blocks (target ≤ 0.8 s at 200 Hz);
* the median and 99th percentile time of one 4-sample block, i.e. one live BLE notification,
  measured after the calibration has settled (targets ≤ 0.25 ms / ≤ 0.6 ms).

Usage: .venv/bin/python benchmarks/pelvis_speed.py [rate_hz] [minutes]
(defaults 200 Hz, 60 min; the per-hour time is scaled from the minutes processed).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.spatial.transform import Rotation

from coach.stream.pelvis_orientation import PelvisTracker
from coach.types import Location, SampleBlock

G = 9.80665


def synthetic_pelvis(rate_hz: float, duration_s: float, seed: int = 0) -> SampleBlock:
    """Running-like pelvis IMU samples in a random mount orientation (see module docstring)."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    w_step = 2 * np.pi * 2.8
    w_stride = w_step / 2
    heading = np.radians(30.0) * np.sin(2 * np.pi * t / 60.0)
    heading_rate = np.radians(30.0) * 2 * np.pi / 60.0 * np.cos(2 * np.pi * t / 60.0)
    obl = 4.0 * np.sin(w_stride * t)
    rot = 6.0 * np.cos(w_stride * t)
    tilt = 3.0 * np.sin(w_step * t + 0.5)
    body = Rotation.from_euler("ZXY", np.column_stack([rot, -obl, tilt]), degrees=True)
    travel = Rotation.from_euler("z", heading[:, None])
    a_travel = np.column_stack(
        [3.0 * np.sin(w_step * t), 1.5 * np.sin(w_stride * t), 9.0 * np.cos(w_step * t)]
    )
    specific = (travel * body).inv().apply(travel.apply(a_travel) + np.array([0.0, 0.0, G]))
    mats = body.as_matrix()
    omega = np.einsum("nji,njk->nik", mats, np.gradient(mats, 1.0 / rate_hz, axis=0))
    gyr_body = np.column_stack([omega[:, 2, 1], omega[:, 0, 2], omega[:, 1, 0]])
    gyr_body += body.inv().apply(np.column_stack([np.zeros((n, 2)), heading_rate]))
    mount = Rotation.random(random_state=seed).as_matrix()
    acc = specific @ mount + rng.normal(0.0, 0.05, (n, 3))
    gyr = gyr_body @ mount + rng.normal(0.0, 0.005, (n, 3)) + [0.01, -0.005, 0.008]
    return SampleBlock(Location.PELVIS, t, acc, gyr)


def time_blocks(tracker: PelvisTracker, block: SampleBlock, size: int) -> np.ndarray:
    """Wall and thread-CPU time of each ``tracker.update`` call on consecutive blocks of ``size``
    samples, s, shape (blocks, 2). CPU time is the figure to trust on a busy machine."""
    starts = range(0, len(block), size)
    pieces = [block.slice(i, i + size) for i in starts]
    times = np.empty((len(pieces), 2))
    for k, piece in enumerate(pieces):
        w0, c0 = time.perf_counter(), time.thread_time()
        tracker.update(piece)
        times[k] = time.perf_counter() - w0, time.thread_time() - c0
    return times


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 200.0
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    data = synthetic_pelvis(rate, 60.0 * minutes)
    tracker = PelvisTracker(rate)
    per_second = time_blocks(tracker, data, round(rate))
    wall, cpu = per_second.sum(axis=0) * 60.0 / minutes
    print(f"PelvisTracker at {rate:g} Hz on {minutes:g} min of synthetic running (wall / CPU)")
    print(f"  1-s blocks: {wall:.3f} / {cpu:.3f} s per hour of data (target <= 0.8 s at 200 Hz)")

    live = synthetic_pelvis(rate, 120.0, seed=1)
    tracker = PelvisTracker(rate)
    warm, split = round(30.0 * rate), round(90.0 * rate)
    tracker.update(live.slice(0, warm))  # calibrated, heading settled
    per_block = time_blocks(tracker, live.slice(warm, split), 4) * 1e3
    median, p99 = np.median(per_block, axis=0), np.percentile(per_block, 99, axis=0)
    print(
        f"  4-sample blocks: median {median[0]:.3f} / {median[1]:.3f} ms, "
        f"p99 {p99[0]:.3f} / {p99[1]:.3f} ms (targets <= 0.25 / 0.6 ms; {len(per_block)} blocks)"
    )
    per_block10 = time_blocks(tracker, live.slice(split, len(live)), 10) * 1e3
    median10 = np.median(per_block10, axis=0)
    print(f"  10-sample blocks: median {median10[0]:.3f} / {median10[1]:.3f} ms")


if __name__ == "__main__":
    main()
