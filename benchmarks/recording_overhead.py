"""Cost of recording raw notifications to MCAP (coach.sinks.recorder) and of reading them back.

Usage: .venv/bin/python benchmarks/recording_overhead.py [--packets 150000] [--dir /tmp]

For 20-byte (WitMotion frame) and 244-byte (max BLE 5 notification) payloads, 3 locations:

1. tight loop: ``write_raw`` timed call by call (µs: median, p99, max) with the real clock and
   flush interval 0.5 s, fsync on; throughput in packets/s and MB/s of payload; bytes on disk
   per packet.
2. flush at a realistic rate (3 sensors × 200 Hz, one sample per notification): duration of
   each flush (chunk compression + write + optional fsync), ms, with fsync on and off.
3. reading back: ``iter_raw`` packets/s and ``summary()`` time on the tight-loop file.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from coach.sinks.recorder import ProfileText, Recorder
from coach.sources.recording import open_recording

LOCS = ("pelvis", "left_shank", "right_shank")
PROFILES = {loc: ProfileText("bench", 'name = "bench"\n') for loc in LOCS}


def payloads(size: int, n: int) -> list[bytes]:
    """Distinct, IMU-like payloads: a counter and slowly varying int16 values."""
    rng = np.random.default_rng(0)
    base = rng.integers(-2000, 2000, size=size // 2, dtype=np.int16)
    out = []
    for i in range(n):
        noise = rng.integers(-50, 50, size=size // 2, dtype=np.int16)
        body = (base + noise).tobytes()[: size - 2]
        out.append((i & 0xFFFF).to_bytes(2, "little") + body)
    return out


def tight_loop(folder: Path, size: int, n: int) -> Path:
    path = folder / f"tight_{size}.mcap"
    path.unlink(missing_ok=True)
    data = payloads(size, 4096)
    calls = np.empty(n, dtype=np.int64)
    rec = Recorder(path, "", PROFILES, 0.5, fsync=True)
    started = time.perf_counter()
    for i in range(n):
        t = i / 600.0
        payload = data[i & 4095]
        loc = LOCS[i % 3]
        t0 = time.perf_counter_ns()
        rec.write_raw(loc, t, payload)
        calls[i] = time.perf_counter_ns() - t0
    elapsed = time.perf_counter() - started
    rec.close()
    us = calls / 1e3
    print(
        f"  write_raw, {size:3d}-byte payload: median {np.median(us):5.2f} µs, "
        f"p99 {np.percentile(us, 99):5.2f} µs, max {us.max() / 1e3:6.1f} ms "
        f"(the max is a flush of ~0.5 s of tight-loop data)"
    )
    print(
        f"    throughput {n / elapsed:9.0f} packets/s = {n * size / elapsed / 1e6:5.1f} MB/s "
        f"payload; {path.stat().st_size / n:5.1f} bytes on disk per packet"
    )
    return path


def realistic_flushes(folder: Path, size: int, fsync: bool, seconds: float = 30.0) -> None:
    path = folder / f"paced_{size}_{fsync}.mcap"
    path.unlink(missing_ok=True)
    clock = [0.0]
    data = payloads(size, 4096)
    rec = Recorder(path, "", PROFILES, 0.5, fsync=fsync, clock=lambda: clock[0])
    durations = []
    rate = 200.0
    for i in range(int(seconds * rate)):
        t = i / rate
        for k, loc in enumerate(LOCS):
            clock[0] = t
            due = clock[0] - rec._last_flush >= rec.flush_interval_s
            t0 = time.perf_counter_ns()
            rec.write_raw(loc, t + k * 1e-4, data[(3 * i + k) & 4095])
            if due:
                durations.append((time.perf_counter_ns() - t0) / 1e6)
    rec.close()
    ms = np.array(durations)
    print(
        f"  flush of 0.5 s at 3 × 200 Hz, {size:3d}-byte payload, "
        f"fsync {'on ' if fsync else 'off'}: "
        f"median {np.median(ms):6.2f} ms, max {ms.max():6.2f} ms over {ms.size} flushes; "
        f"{path.stat().st_size / (seconds * rate * 3):5.1f} bytes/packet, "
        f"{path.stat().st_size / seconds / 1e3:6.1f} kB/s"
    )


def reading(path: Path) -> None:
    recording = open_recording(path)
    t0 = time.perf_counter()
    n = sum(1 for _ in recording.iter_raw())
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = recording.summary()
    summary_s = time.perf_counter() - t0
    total = sum(s.packets for s in summary.values())
    assert total == n, (total, n)
    print(
        f"  read {path.name}: iter_raw {n / read_s:9.0f} packets/s; "
        f"summary() {summary_s * 1e3:6.1f} ms "
        f"for {n} packets ({read_s / summary_s:4.1f}x faster than iterating)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=150_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder for the files (default: temp)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(
            f"files in {folder} ({os.uname().sysname}; "
            f"filesystem of {args.dir or tempfile.gettempdir()})"
        )
        print("1. tight loop (3 locations, flush interval 0.5 s, fsync on)")
        files = [tight_loop(folder, size, args.packets) for size in (20, 244)]
        print("2. flushes at a realistic rate")
        for size in (20, 244):
            for fsync in (False, True):
                realistic_flushes(folder, size, fsync)
        print("3. reading back")
        for path in files:
            reading(path)


if __name__ == "__main__":
    main()
