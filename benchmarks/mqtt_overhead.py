"""Cost of MQTT publishing to the core: per-block processing time with publishing on vs off.

Usage: .venv/bin/python benchmarks/mqtt_overhead.py [--duration 20] [--block-s 0.02]
       [--repeats 10] [--qos 0]

A simulated 3-sensor session (200 Hz) is replayed block by block through the real pipeline
(coach.runtime.Pipeline: core + cue engine) inside an asyncio loop, as a live run would:

- off: ``pipeline.feed(block)`` only;
- on:  the same, plus ``publish_event/stride/cue/quality`` of every output and a status each
  second through :class:`coach.sinks.mqtt.MqttPublisher`, connected to a local mosquitto
  (started on a free port when installed; otherwise the publisher runs its reconnect loop
  against a closed port, which is also a case the core must not notice).

The timed part is what the core's task does per block (feed + ``publish_*``), as CPU time of
the thread (``time.thread_time_ns``: other processes on a shared machine do not inflate it).
After each block the loop yields once (``asyncio.sleep(0)``), so the publisher's drain task
runs between blocks, as it does between BLE notifications in a live run; its cost shows in the
CPU time of the whole run, printed too. Runs come in ``--repeats`` back-to-back off/on pairs
(alternating order); the change is the median over pairs, printed with its range, the
run-to-run spread of the "off" runs alone (the noise floor of a shared machine) and the cost of
the ``publish_*`` calls timed on their own.
Target (issue 7): per-block processing times differ by < 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.config import MqttConfig, load_config
from coach.runtime import Pipeline, sensor_specs
from coach.sinks.mqtt import MqttPublisher
from coach.sources.csv_folder import CsvSession
from coach.sources.replay import iter_blocks
from coach.sources.simulate import SimulationParams, simulate
from coach.types import EventKind, GaitEvent, SampleBlock, Side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes] | None, int]:
    """An anonymous mosquitto on 127.0.0.1 (None when not installed) and its port."""
    port = free_port()
    binary = shutil.which("mosquitto")
    if binary is None:
        return None, port
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "user root\nlog_dest none\n"
    )
    process = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, port
        except OSError:
            time.sleep(0.01)
    process.kill()
    raise SystemExit("mosquitto did not start")


@dataclass
class Run:
    """One replay: per-block CPU times (ns) of the core and of the publish calls, run CPU (s)."""

    core: np.ndarray
    publish: np.ndarray
    run_cpu_s: float
    produced: int = 0
    sent: int = 0
    dropped: int = 0

    @property
    def block(self) -> np.ndarray:
        """What the core's task spends per block: feed plus publish calls."""
        return self.core + self.publish


async def replay(
    blocks: list[SampleBlock],
    session: CsvSession,
    mqtt: MqttConfig | None,
    paced: bool = False,
) -> Run:
    """Replay ``blocks`` through a fresh pipeline, publishing everything when ``mqtt`` is set."""
    pipeline = Pipeline(load_config(), sensor_specs(session))
    core = np.zeros(len(blocks), dtype=np.int64)
    publish = np.zeros(len(blocks), dtype=np.int64)
    publisher = MqttPublisher(mqtt, "bench", flush_timeout_s=5.0) if mqtt is not None else None
    started = time.process_time()
    if publisher is not None:
        await publisher.__aenter__()
        async with asyncio.timeout(5.0):  # (no broker: go on unconnected)
            await publisher.wait_until(
                lambda: publisher.connected.is_set() or publisher.stats.connect_failures > 0
            )
    next_status = 1.0
    clock = time.thread_time_ns  # CPU time of this thread: other processes do not inflate it
    for i, block in enumerate(blocks):
        t0 = clock()
        output, cues = pipeline.feed(block)
        t1 = clock()
        core[i] = t1 - t0
        if publisher is not None:
            for event in output.events:
                publisher.publish_event(event)
            for stride in output.strides:
                publisher.publish_stride(stride)
            for cue in cues:
                publisher.publish_cue(cue)
            for change in output.quality:
                publisher.publish_quality(change)
            if block.t[-1] >= next_status:
                next_status += 1.0
                publisher.publish_status({"session_time_s": float(block.t[-1])})
            publish[i] = clock() - t1
        if paced:  # as in a live run: the next block arrives when its last sample is due
            loop = asyncio.get_running_loop()
            if i == 0:
                start_wall, start_t = loop.time(), float(block.t[-1])
            await asyncio.sleep(max(0.0, start_wall + float(block.t[-1]) - start_t - loop.time()))
        else:
            await asyncio.sleep(0)  # the drain task runs here, between blocks
    run = Run(core, publish, 0.0)
    if publisher is not None:
        await publisher.__aexit__(None, None, None)
        run.produced = sum(publisher._seq.values())
        run.sent, run.dropped = publisher.stats.sent, publisher.stats.dropped
    run.run_cpu_s = time.process_time() - started
    return run


def publish_call_us(n: int = 20000) -> float:
    """Mean cost of one ``publish_event`` with the drain task waiting, µs."""
    event = GaitEvent(1.0, 1.02, EventKind.INITIAL_CONTACT, Side.LEFT)

    async def measure() -> float:
        publisher = MqttPublisher(MqttConfig(queue_size=n), "bench")
        total = 0
        for _ in range(n):
            t0 = time.perf_counter_ns()
            publisher.publish_event(event)
            total += time.perf_counter_ns() - t0
        return total / n / 1e3

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="session length, s")
    parser.add_argument("--block-s", type=float, default=0.02, help="block length, s")
    parser.add_argument("--repeats", type=int, default=10, help="on/off pairs")
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1, 2))
    parser.add_argument(
        "--paced",
        action="store_true",
        help="feed blocks at real pace, as a live run does (default: back to back)",
    )
    args = parser.parse_args()

    sim = simulate(SimulationParams(duration_s=args.duration, seed=0))
    session = CsvSession(sim.blocks)
    blocks = list(iter_blocks(session, args.block_s))
    print(
        f"session: simulated {args.duration:g} s, {len(session.blocks)} sensors at 200 Hz, "
        f"{len(blocks)} blocks of {args.block_s * 1000:g} ms"
    )
    runs: dict[str, list[Run]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as folder:
        broker, port = start_broker(Path(folder))
        print(
            f"broker: mosquitto on 127.0.0.1:{port}"
            if broker
            else "broker: none installed (publisher keeps retrying a closed port)"
        )
        mqtt = MqttConfig(
            enabled=True, port=port, qos=args.qos, reconnect_min_s=0.05, reconnect_max_s=0.5
        )
        try:
            asyncio.run(replay(blocks[: len(blocks) // 10], session, None))  # warm-up
            for repeat in range(args.repeats):  # pairs, in alternating order
                for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
                    config = mqtt if mode == "on" else None
                    runs[mode].append(asyncio.run(replay(blocks, session, config, args.paced)))
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(timeout=5)

    def med(values: list[float]) -> float:
        return float(np.median(values))

    print(f"\nper-block CPU time of the core's task, µs (median over {args.repeats} runs)")
    print(f"{'mqtt':<5} {'median':>8} {'mean':>8} {'p99':>8} {'run CPU s':>10}")
    figures: dict[str, dict[str, float]] = {}
    for mode, results in runs.items():
        figures[mode] = {
            "median": med([np.median(r.block) for r in results]) / 1e3,
            "mean": med([np.mean(r.block) for r in results]) / 1e3,
            "p99": med([np.percentile(r.block, 99) for r in results]) / 1e3,
            "run": med([r.run_cpu_s for r in results]),
        }
        f = figures[mode]
        print(f"{mode:<5} {f['median']:8.1f} {f['mean']:8.1f} {f['p99']:8.1f} {f['run']:10.2f}")
    off_means = [float(np.mean(r.block)) / 1e3 for r in runs["off"]]
    noise = 100.0 * (max(off_means) - min(off_means)) / med(off_means)
    print()
    for stat, fn in (("median", np.median), ("mean", np.mean)):
        # Paired runs (back to back) cancel slow changes of the machine's load.
        ratios = [
            100.0 * (float(fn(on.block)) / float(fn(off.block)) - 1.0)
            for on, off in zip(runs["on"], runs["off"], strict=True)
        ]
        change = med(ratios)
        verdict = "OK" if abs(change) < 5.0 else "above 5 %"
        print(
            f"per-block {stat:<6} on vs off: {change:+6.1f} % median of {len(ratios)} pairs "
            f"(range {min(ratios):+.1f} to {max(ratios):+.1f} %; target < 5 %: {verdict})"
        )
    print(f"  run-to-run spread of the 'off' mean alone: {noise:.1f} % (machine noise)")
    last = runs["on"][-1]
    publish_us = med([float(np.mean(r.publish)) for r in runs["on"]]) / 1e3
    print(
        f"publish calls alone (incl. one clock read): {publish_us:.2f} µs per block on average "
        f"({100.0 * publish_us / figures['off']['mean']:.2f} % of the core's mean); "
        f"one publish_event call: {publish_call_us():.2f} µs"
    )
    change = 100.0 * (figures["on"]["run"] / figures["off"]["run"] - 1.0)
    print(f"whole-run CPU incl. the drain task and the socket: {change:+.1f} %")
    print(
        f"messages per run: {last.produced} produced, {last.sent} sent, "
        f"{last.dropped} dropped (qos {args.qos})"
    )


if __name__ == "__main__":
    main()
