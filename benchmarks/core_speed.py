"""Speed and memory of the streaming core, 3 sensors at 200 Hz (issue 3 targets).

Prints:
- per-block processing time of live-sized blocks (4 samples = one BLE notification of one
  sensor, sensors interleaved as they would arrive): median, p99, max;
- replay speed of a 1-hour session as fast as possible (x real time);
- peak memory (tracemalloc) of a 1-hour replay against a 5-minute one.

    .venv/bin/python benchmarks/core_speed.py [--hours 1.0]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from coach.config import CoachConfig
from coach.runtime import FAST_BLOCK_S, Pipeline, replay_blocks, sensor_specs
from coach.sources.csv_folder import CsvSession
from coach.sources.replay import iter_blocks
from coach.sources.simulate import SimulationParams, simulate

CONFIG = CoachConfig()


def _session(duration_s: float, seed: int = 1) -> CsvSession:
    run = simulate(
        SimulationParams(
            duration_s=duration_s,
            seed=seed,
            mount="random",
            packet_loss=0.01,
            clock_drift_ppm=100.0,
        )
    )
    return CsvSession(run.blocks)


def live_block_times(session: CsvSession, samples_per_block: int = 4) -> np.ndarray:
    """Process the session in 4-sample blocks per sensor, interleaved by time; time each call."""
    pipeline = Pipeline(CONFIG, sensor_specs(session))
    blocks = iter_blocks(session, block_s=samples_per_block / 200.0)
    durations = np.empty(len(blocks))
    for i, block in enumerate(blocks):
        started = time.perf_counter()
        pipeline.feed(block)
        durations[i] = time.perf_counter() - started
    return durations


def replay_seconds(session: CsvSession, block_s: float = FAST_BLOCK_S) -> float:
    blocks = iter_blocks(session, block_s)
    started = time.perf_counter()
    replay_blocks(CONFIG, sensor_specs(session), blocks)
    return time.perf_counter() - started


def peak_memory(session: CsvSession) -> tuple[float, int]:
    """Peak memory of the pipeline's state while replaying, MB, and the strides it made.

    The input session (already in memory) and the outputs (handed on to sinks, which write them
    out) are not counted: this is the memory that would grow if the core's state did.
    """
    blocks = iter_blocks(session, 1.0)
    specs = sensor_specs(session)  # reads the whole input: not part of the pipeline's state
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    pipeline = Pipeline(CONFIG, specs)
    strides = 0
    for block in blocks:
        output, _ = pipeline.feed(block)
        strides += len(output.strides)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 1e6, strides


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()

    short = _session(300.0)
    times = live_block_times(short) * 1000
    print("Live blocks (4 samples of one sensor, 3 sensors at 200 Hz, 5 min of data):")
    print(
        f"  per block: median {np.median(times):.3f} ms, p99 {np.percentile(times, 99):.3f} ms, "
        f"max {times.max():.3f} ms over {times.size} blocks (target p99 <= 1 ms)"
    )
    busy = times.sum() / 1000 / 300.0
    print(f"  CPU share of one core for the core alone: {100 * busy:.1f} %")

    long = _session(3600.0 * args.hours, seed=2)
    seconds = replay_seconds(long)
    factor = 3600.0 * args.hours / seconds
    print(
        f"Replay of {args.hours:g} h, 3 sensors at 200 Hz, {FAST_BLOCK_S:g}-s blocks "
        f"(as coach replay cuts them): {seconds:.2f} s = "
        f"{factor:.0f}x real time (target >= 1000x)"
    )

    peak_short, n_short = peak_memory(short)
    peak_long, n_long = peak_memory(long)
    print(
        f"Peak memory of the pipeline state: 5 min {peak_short:.2f} MB ({n_short} strides), "
        f"{args.hours:g} h {peak_long:.2f} MB ({n_long} strides): "
        f"{100 * (peak_long / peak_short - 1):+.0f} % (target <= +20 %)"
    )


if __name__ == "__main__":
    main()
