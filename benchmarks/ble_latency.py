"""Latency and CPU cost of live BLE streaming, against three emulated coach-sim sensors.

Three emulated sensors (pelvis, both shanks; 200 Hz, 4 samples per notification, 15 ms
connection interval) stream a simulated run in real time over bumble's in-process link; coach
connects through the real bleak API (bumble backend), and a consumer task decodes each packet and
feeds the core (``coach.runtime.Pipeline``), as a live run does. Printed:

* sample -> host stamp: from a packet's last sample time to the notification callback (the
  wait for the next connection event plus the BLE stack), p50 / p99;
* sample -> consumer: the same, up to the consumer taking the packet off the queue;
* initial contact -> out of the core: host time an event leaves the core minus the event's time
  ``t`` (includes the algorithm's delay) and minus ``t_detected`` (the last sample needed);
* CPU: coach side (notification callbacks + decode + core, measured with ``time.thread_time``
  around that code) as a share of one core, and the whole process (which also runs the
  emulated sensors and both bumble host stacks, i.e. what BlueZ and the sensors do in reality).

    .venv/bin/python benchmarks/ble_latency.py [--duration-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from bumble.link import LocalLink

from coach.config import CoachConfig
from coach.profiles import load_profile
from coach.runtime import Pipeline
from coach.sources.ble import BleBackend, SensorStream, SensorTarget
from coach.sources.bumble_backend import BumbleRadio
from coach.sources.emulated_sensor import EmulatedClock, emulated_sensors
from coach.sources.recording import RawPacket
from coach.sources.simulate import SimulationParams, simulate
from coach.stream.core import SensorSpec
from coach.types import EventKind
from coach.wire import make_decoder


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


async def main(duration_s: float) -> None:
    profile = load_profile("coach-sim")
    run = simulate(SimulationParams(duration_s=duration_s + 5.0, seed=1, noise="realistic"))
    link = LocalLink()
    radio = BumbleRadio(link)
    clock = EmulatedClock(1.0)
    sensors = emulated_sensors(profile, run.blocks, link, clock=clock)
    for s in sensors:
        await s.start()
    by_location = {s.location: s for s in sensors}
    stream = SensorStream(
        [SensorTarget(s.location, profile, name=s.name) for s in sensors],
        backend=BleBackend(radio.client_backend, radio.scanner_backend),
        clock=clock.now,
    )
    coach_cpu = [0.0]
    for link_ in stream.links.values():  # time the notification callbacks (coach side)
        original = link_._on_notify

        def timed(char: object, data: bytearray, _orig=original) -> None:
            c0 = time.thread_time()
            _orig(char, data)  # type: ignore[arg-type]
            coach_cpu[0] += time.thread_time() - c0

        link_._on_notify = timed  # type: ignore[method-assign]

    await stream.start(10.0)
    pipeline = Pipeline(CoachConfig(), [SensorSpec(loc, 200.0, True) for loc in sorted(run.blocks)])
    decoders = {loc: make_decoder(profile) for loc in run.blocks}
    seen = {loc: 0 for loc in run.blocks}
    to_stamp: list[float] = []
    to_consumer: list[float] = []
    event_t: list[float] = []
    event_detected: list[float] = []

    async def consume() -> None:
        while True:
            packet: RawPacket = await stream.packets.get()
            now = clock.now()
            c0 = time.thread_time()
            sensor = by_location[packet.location]
            k = seen[packet.location]
            seen[packet.location] += 1
            if k < len(sensor.log.sent):
                last = float(sensor.samples.t[sensor.log.sent[k][1] - 1])
                to_stamp.append(packet.host_time_s - last)
                to_consumer.append(now - last)
            out = decoders[packet.location].feed(packet.payload, packet.host_time_s)
            if len(out):
                output, _cues = pipeline.feed(out.to_block(packet.location))
                done = clock.now()
                for e in output.events:
                    if e.kind is EventKind.INITIAL_CONTACT:
                        event_t.append(done - e.t)
                        event_detected.append(done - e.t_detected)
            coach_cpu[0] += time.thread_time() - c0

    start_wall, start_cpu, start_coach = clock.now(), time.process_time(), coach_cpu[0]
    consumer = asyncio.create_task(consume())
    await clock.sleep_until(start_wall + duration_s)
    wall = clock.now() - start_wall
    cpu = time.process_time() - start_cpu
    coach = coach_cpu[0] - start_coach
    consumer.cancel()
    await stream.stop()
    for s in sensors:
        await s.stop()
    await radio.close()

    packets = sum(seen.values())
    rows = [
        ("sample -> host stamp", to_stamp),
        ("sample -> queue consumer", to_consumer),
        (f"IC t -> out of the core ({len(event_t)} ICs)", event_t),
        ("IC t_detected -> out of the core", event_detected),
    ]
    print(
        f"3 emulated coach-sim sensors, 200 Hz, 4 samples/notification, 15 ms connection "
        f"interval, {wall:.1f} s real time, {packets} notifications, {stream.dropped} dropped"
    )
    for label, values in rows:
        print(f"{label:<40} p50 {pct(values, 50):6.1f} ms   p99 {pct(values, 99):6.1f} ms")
    print(f"CPU coach side (callbacks + decode + core): {100 * coach / wall:5.1f} % of one core")
    print(f"CPU whole process (+ emulators, both bumble stacks): {100 * cpu / wall:5.1f} %")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=20.0)
    asyncio.run(main(parser.parse_args().duration_s))
