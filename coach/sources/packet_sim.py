"""The synthetic runner as a device would have streamed it: notifications with arrival times.

:func:`simulate_packets` runs the simulator (:mod:`coach.sources.simulate`), then per sensor:

1. Packets: the samples are grouped into the device's packets (``samples_per_packet`` of the
   firmware profile, aligned on the device's sample counter). Packet loss comes from the
   simulator (``packet_loss``, whole packets in bursts, with ``samples_per_packet`` set to the
   profile's): a lost packet is never received. A trailing packet the run does not fill is not
   sent. The truth blocks keep exactly the samples that were sent.
2. Bytes: :func:`coach.wire.encode` with the device's own view of time: counters start at a
   random value, timestamps at a random uptime, and both advance on the sensor's clock, which
   drifts as simulated (``clock_drift_ppm``); a timestamp counter may wrap.
3. Arrival: a packet is ready when its last sample is taken (true session time). It is sent at
   the next connection event of its link (connection interval 7.5–50 ms in steps of 1.25 ms,
   random phase, at most ``max_per_event`` notifications per event, the rest waits for the next
   one), then reaches the application after a random positive delay of the host stack and
   scheduler: one per connection event (its notifications come as a burst 50 µs apart),
   exponential with mean ``max_delay_s``/4, capped at ``max_delay_s``; order on a link is kept.

Everything is seeded by the simulation seed: the same parameters give the same notifications.
Writing them to a recording is the caller's job (any object with ``write_raw``, e.g.
:class:`coach.sinks.recorder.Recorder`); :func:`write_truth` writes the simulator's truth
folder beside it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import tomli_w
from numpy.typing import NDArray

from coach.profiles import FirmwareProfile
from coach.sources.recording import RawPacket
from coach.sources.simulate import SimulatedRun, SimulationParams, simulate, write_simulated_session
from coach.types import LOCATIONS, Location, SampleBlock
from coach.wire import encode

IntArray = NDArray[np.int64]

#: BLE connection intervals are multiples of 1.25 ms.
CI_STEP_S = 0.00125
#: Spacing of the notifications of one connection event at the host, s.
BURST_SPACING_S = 50e-6


class RawSink(Protocol):
    """Where notifications go (a :class:`~coach.sinks.recorder.Recorder` fits)."""

    def write_raw(self, location: str, host_time_s: float, payload: bytes) -> None:
        """Take one notification received at ``host_time_s`` (session s)."""


@dataclass(frozen=True)
class LinkParams:
    """The BLE link model of :func:`simulate_packets`.

    Attributes:
        min_interval_s: shortest connection interval drawn, s (BLE minimum 7.5 ms).
        max_interval_s: longest connection interval drawn, s; lowered for a sensor whose
            notifications would not fit (at most 70 % of the event capacity is used).
        max_per_event: notifications one connection event carries at most.
        max_delay_s: longest host-side delay after a connection event, s (exponential with a
            quarter of this as mean, capped here).

    """

    min_interval_s: float = 0.0075
    max_interval_s: float = 0.050
    max_per_event: int = 6
    max_delay_s: float = 0.020

    def __post_init__(self) -> None:
        if not 0.0075 <= self.min_interval_s <= self.max_interval_s <= 4.0:
            raise ValueError("need 7.5 ms <= min_interval_s <= max_interval_s <= 4 s")
        if self.max_per_event < 1:
            raise ValueError("max_per_event must be at least 1")
        if not 0.0 <= self.max_delay_s <= 1.0:
            raise ValueError("max_delay_s must be within 0..1 s")


@dataclass(frozen=True)
class LinkTruth:
    """What the link and device of one sensor did (hidden from the decoder).

    Attributes:
        connection_interval_s: the link's connection interval, s.
        phase_s: session time of its first connection event, s.
        start_counter: sample counter value of sample 0 (counter formats, else 0).
        sensor_clock_start_s: device timestamp of sample 0, s (timestamp formats, else 0).
        packets: device packets sent.
        notifications: notifications sent (a two-part packet sends two).
        samples_sent: samples in the packets sent.
        samples_unsent: simulated samples not sent (trailing part of a packet).

    """

    connection_interval_s: float
    phase_s: float
    start_counter: int
    sensor_clock_start_s: float
    packets: int
    notifications: int
    samples_sent: int
    samples_unsent: int


@dataclass(frozen=True)
class PacketRun:
    """A simulated run as notifications of one firmware profile.

    Attributes:
        run: the simulation; its blocks hold exactly the samples that were sent (true times).
        profile: the firmware profile every sensor speaks.
        rate_hz: configured sample rate, Hz.
        packets: every notification in arrival order (host time, then location).
        sample_index: device sample index of each sample of ``run.blocks`` (from 0).
        links: per sensor, what the link did.

    """

    run: SimulatedRun
    profile: FirmwareProfile
    rate_hz: float
    packets: list[RawPacket]
    sample_index: dict[Location, IntArray]
    links: dict[Location, LinkTruth]

    def write_to(self, sink: RawSink) -> int:
        """Hand every notification to ``sink`` in arrival order; returns how many."""
        for packet in self.packets:
            sink.write_raw(packet.location.value, packet.host_time_s, packet.payload)
        return len(self.packets)


def simulate_packets(
    params: SimulationParams, profile: FirmwareProfile, link: LinkParams | None = None
) -> PacketRun:
    """Simulate a run and the notifications ``profile``'s device would have sent.

    ``params.rate_hz`` must be a rate the profile supports; ``params.samples_per_packet`` is
    replaced by the profile's.

    Raises:
        ProfileError: the profile does not support ``params.rate_hz``.
        ValueError: the profile measures no gyroscope while the simulator needs one (never for
            the bundled profiles) or the link parameters are invalid.

    """
    link = link or LinkParams()
    rate = profile.check_rate(params.rate_hz)
    spp = profile.packet.samples_per_packet
    run = simulate(replace(params, samples_per_packet=spp))
    blocks: dict[Location, SampleBlock] = {}
    indexes: dict[Location, IntArray] = {}
    links: dict[Location, LinkTruth] = {}
    streams: list[tuple[Location, NDArray[np.float64], list[bytes]]] = []
    sensors = dict(run.sensors)
    for location, block in run.blocks.items():
        truth = run.sensors[location]
        rng = np.random.default_rng([params.seed, 900, LOCATIONS.index(location.value)])
        actual_rate = rate * (1.0 + truth.clock_ppm * 1e-6)
        index = np.rint((block.t - truth.start_offset_s) * actual_rate).astype(np.int64)
        keep = _complete_packets(index, spp)
        sent = block.slice(0, 0) if not keep.any() else _select(block, keep)
        index = index[keep]
        payloads, counter0, clock0 = _encode(profile, rate, sent, index, rng)
        n_packets = len(index) // spp
        ready = sent.t[spp - 1 :: spp][:n_packets]
        per_packet = len(payloads) // n_packets if n_packets else 1
        ready = np.repeat(ready, per_packet)
        ci, phase, host = _arrivals(ready, rate / spp * per_packet, link, rng)
        blocks[location] = sent
        indexes[location] = index
        sensors[location] = replace(
            truth, samples_dropped=truth.samples_dropped + int((~keep).sum())
        )
        links[location] = LinkTruth(
            ci, phase, counter0, clock0, n_packets, len(payloads), len(index), int((~keep).sum())
        )
        streams.append((location, host, payloads))
    packets = _merge(streams)
    return PacketRun(
        replace(run, blocks=blocks, sensors=sensors), profile, rate, packets, indexes, links
    )


def _complete_packets(index: IntArray, spp: int) -> NDArray[np.bool_]:
    """Samples that belong to a packet whose ``spp`` samples are all present."""
    group = index // spp
    _, start, counts = np.unique(group, return_index=True, return_counts=True)
    full = np.zeros(index.shape[0], dtype=bool)
    for s, c in zip(start.tolist(), counts.tolist(), strict=True):
        if c == spp:
            full[s : s + c] = True
    return full


def _select(block: SampleBlock, keep: NDArray[np.bool_]) -> SampleBlock:
    gyr = None if block.gyr is None else np.ascontiguousarray(block.gyr[keep])
    return SampleBlock(
        block.location,
        np.ascontiguousarray(block.t[keep]),
        np.ascontiguousarray(block.acc[keep]),
        gyr,
    )


def _encode(
    profile: FirmwareProfile,
    rate: float,
    block: SampleBlock,
    index: IntArray,
    rng: np.random.Generator,
) -> tuple[list[bytes], int, float]:
    """Notifications of one sensor, with the device's counter start and clock start."""
    lay = profile.packet
    counter0 = int(rng.integers(0, 1 << lay.counter.bits)) if lay.counter is not None else 0
    clock0 = 0.0
    if lay.timestamp is not None:
        span = (1 << lay.timestamp.bits) * lay.timestamp.tick_s
        clock0 = round(float(rng.uniform(0.0, span)) / lay.timestamp.tick_s) * lay.timestamp.tick_s
    if block.t.shape[0] == 0:
        return [], counter0, clock0
    # The device's own clock: sample i is at clock0 + i / nominal rate; as its crystal drifts,
    # the true times (block.t) drift against it.
    sensor_time = clock0 + index / rate
    gyr = block.gyr if profile.has_gyro else None
    count_varies = lay.count_from != "fixed"
    payloads = encode(
        profile,
        block.t,
        block.acc,
        gyr,
        index=index,
        sensor_time=sensor_time,
        samples_per_packet=lay.samples_per_packet if count_varies else None,
        start_counter=counter0,
    )
    return payloads, counter0, clock0


def _arrivals(
    ready: NDArray[np.float64],
    notify_rate_hz: float,
    link: LinkParams,
    rng: np.random.Generator,
) -> tuple[float, float, NDArray[np.float64]]:
    """(connection interval, phase, host receive time of each notification)."""
    fit = 0.7 * link.max_per_event / max(notify_rate_hz, 1e-9)
    hi = max(link.min_interval_s, min(link.max_interval_s, fit))
    steps = np.arange(
        math.ceil(link.min_interval_s / CI_STEP_S - 1e-9),
        math.floor(hi / CI_STEP_S + 1e-9) + 1,
    )
    ci = float(rng.choice(steps)) * CI_STEP_S if steps.size else link.min_interval_s
    phase = float(rng.uniform(0.0, ci))
    n = ready.shape[0]
    events = np.empty(n, dtype=np.int64)
    earliest = np.ceil((ready - phase) / ci).astype(np.int64)
    current, used = -(1 << 62), 0
    for i in range(n):
        k = int(earliest[i])
        if k <= current:
            k = current if used < link.max_per_event else current + 1
        if k != current:
            current, used = k, 0
        used += 1
        events[i] = k
    if n == 0:
        return ci, phase, ready.astype(np.float64)
    # One host delay per connection event (its notifications are handled as one burst, a few
    # tens of µs apart), mostly short with a tail up to max_delay_s; order on the link is kept.
    first = np.r_[True, events[1:] != events[:-1]]
    event_of = np.cumsum(first) - 1
    delay = np.minimum(rng.exponential(link.max_delay_s / 4.0, int(first.sum())), link.max_delay_s)
    position = np.arange(n) - np.flatnonzero(first)[event_of]
    host = phase + events * ci + delay[event_of] + position * BURST_SPACING_S
    return ci, phase, np.maximum.accumulate(host)


def _merge(streams: list[tuple[Location, NDArray[np.float64], list[bytes]]]) -> list[RawPacket]:
    """All notifications in arrival order (ties: the order of ``streams``, then of each)."""
    packets = [
        (float(h), k, i, location, payload)
        for k, (location, host, payloads) in enumerate(streams)
        for i, (h, payload) in enumerate(zip(host.tolist(), payloads, strict=True))
    ]
    packets.sort(key=lambda p: (p[0], p[1], p[2]))
    return [RawPacket(location, h, payload) for h, _, _, location, payload in packets]


def write_truth(packet_run: PacketRun, folder: Path | str) -> Path:
    """Write the simulator truth of a packet run into ``folder`` (created).

    The same files as ``truth/`` of :func:`coach.sources.simulate.write_simulated_session`
    (``events.csv``, ``strides.csv``, ``pelvis_angles.csv``, ``truth_meta.toml``) plus
    ``link.toml``: profile, rate and per sensor what the link and the device did.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as staging:
        write_simulated_session(replace(packet_run.run, blocks={}), Path(staging))
        for file in (Path(staging) / "truth").iterdir():
            shutil.move(str(file), folder / file.name)
    link = {
        "profile": packet_run.profile.name,
        "rate_hz": packet_run.rate_hz,
        "time_base": "session time, s; host receive times as recorded",
        "sensors": {
            location.value: {
                "connection_interval_ms": round(t.connection_interval_s * 1000, 3),
                "phase_ms": round(t.phase_s * 1000, 6),
                "start_counter": t.start_counter,
                "sensor_clock_start_s": t.sensor_clock_start_s,
                "packets": t.packets,
                "notifications": t.notifications,
                "samples_sent": t.samples_sent,
                "samples_unsent": t.samples_unsent,
            }
            for location, t in packet_run.links.items()
        },
    }
    (folder / "link.toml").write_text(tomli_w.dumps(link), encoding="utf-8")
    return folder
