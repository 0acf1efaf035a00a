"""Emulated BLE sensors: bumble peripherals that advertise, answer and stream like real firmware.

An :class:`EmulatedSensor` speaks one fixed-layout firmware profile (``firmware_profiles/*.toml``)
on a bumble :class:`~bumble.link.LocalLink`: it advertises a name that fits the profile's
``device_name_pattern`` and the profile's advertised service, exposes the profile's GATT service
and characteristics, obeys the profile's configure / start / stop writes and notification
subscriptions (all taken from the profile data: no per-vendor code), and streams given samples
encoded with :func:`coach.wire.encode` at the pace of an emulated clock.

Pacing: a packet is ready when its last sample has been taken (sample time ≤ clock) and is sent
at the next connection event (every ``connection_interval_ms`` since the connection started),
which is the delay a real link adds. Samples taken while the sensor was not streaming are never
sent (as on a real sensor); counters and timestamps keep counting, so gaps are visible.

Faults for tests and manual trials: a link loss at ``disconnect_at_s`` (the sensor drops the
connection and goes silent; with ``reconnect_after_s`` it advertises again that much later),
``malformed_every`` (after every n-th notification a truncated copy is sent as well), a ``stall``
``(t, duration)`` (nothing is sent during it; what was held back arrives in a burst after it, as
link-layer retransmission does) and a slower connection interval.

All times are emulated session seconds from :class:`EmulatedClock`, whose ``time_scale`` lets
tests run faster than real time; the BLE side must stamp packets with the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bumble import hci
from bumble.controller import Controller
from bumble.core import UUID as BumbleUUID  # noqa: N811
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from coach.profiles import FirmwareProfile
from coach.types import Location, SampleBlock
from coach.wire import encode

log = logging.getLogger(__name__)

_WRITE_OPS = ("write", "write_no_response")
_LINK_LOSS = hci.HCI_CONNECTION_TIMEOUT_ERROR  # what a central sees when a sensor walks away


class EmulatedClock:
    """Emulated session time, s: ``(loop time − start) × time_scale``; 0 at :meth:`start`.

    Args:
        time_scale: emulated seconds per real second (1 = real time, 5 = five times faster).

    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0.0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = time_scale
        self._t0: float | None = None

    def start(self) -> None:
        """Set session time 0 to now (only the first call counts)."""
        if self._t0 is None:
            self._t0 = asyncio.get_running_loop().time()

    def now(self) -> float:
        """Current emulated session time, s (starts the clock when not started)."""
        self.start()
        assert self._t0 is not None
        return (asyncio.get_running_loop().time() - self._t0) * self.time_scale

    async def sleep_until(self, t: float) -> None:
        """Sleep until emulated time ``t`` (returns at once when it has passed)."""
        delay = (t - self.now()) / self.time_scale
        if delay > 0.0:
            await asyncio.sleep(delay)


def example_name(profile: FirmwareProfile, location: Location | str) -> str:
    """An advertised name that fits ``profile.device_name_pattern``.

    ``"<profile> <location>"`` when that fits (``coach-sim pelvis``, as in
    ``configs/default.toml``), else derived from the pattern (``Movesense left-shank``): anchors
    dropped, the first alternative of a group kept, optional characters dropped. Raises
    ValueError when neither fits (give the sensor a name).
    """
    loc = Location(location).value
    name = f"{profile.name} {loc}"
    if profile.matches_name(name):
        return name
    base = profile.device_name_pattern.strip("^$")
    base = re.sub(r"\(([^|()]*)(\|[^()]*)?\)", r"\1", base)
    base = re.sub(r"(\\?.)\?", "", base).replace("\\", "")
    suffix = loc.replace("_", "-")
    name = f"{base}{suffix}" if base.endswith("-") else f"{base} {suffix}"
    if not profile.matches_name(name):
        raise ValueError(f"cannot derive a name for profile {profile.name}; give name=")
    return name


def _sample_index(t: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Sample counter of each sample: elapsed time over the median period (gaps skip values)."""
    if t.shape[0] < 2:
        return np.zeros(t.shape[0], dtype=np.int64)
    period = float(np.median(np.diff(t)))
    index: np.ndarray[Any, Any] = np.rint((t - t[0]) / period).astype(np.int64)
    return index


@dataclass
class SensorLog:
    """What an emulated sensor did (for tests and the benchmark).

    Attributes:
        connections: connections accepted.
        notifications: valid notifications sent.
        malformed: malformed notifications sent.
        sent: (first, stop) sample positions of every packet sent, in order.
        send_times: emulated time at which each packet was sent, s.
        late_s: how much later than its connection event each packet was sent (a busy host), s.
        writes: every write received, in order.
        configured_rate_hz: rate set by a configure write (None: not configured).
        advertising_since: emulated times at which advertising (re)started, s.
        disconnected_at: emulated times of sensor-side link losses, s.

    """

    connections: int = 0
    notifications: int = 0
    malformed: int = 0
    sent: list[tuple[int, int]] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)
    late_s: list[float] = field(default_factory=list)
    writes: list[bytes] = field(default_factory=list)
    configured_rate_hz: float | None = None
    advertising_since: list[float] = field(default_factory=list)
    disconnected_at: list[float] = field(default_factory=list)

    def positions(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Sample positions (into the sensor's block) of every sample sent, in order."""
        if not self.sent:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in self.sent])


class EmulatedSensor:
    """A bumble peripheral that behaves like a sensor running ``profile``'s firmware.

    Args:
        profile: a fixed-layout firmware profile.
        location: where the emulated sensor is worn (used in its default name).
        samples: what it measures (session time base of ``clock``), e.g. a simulator block.
        link: the radio link (share it with :class:`~coach.sources.bumble_backend.BumbleRadio`).
        address: its static random address (unique on the link).
        name: advertised name (default :func:`example_name`).
        clock: the emulated clock (a new real-time one when None).
        disconnect_at_s: emulated time of a link loss (None: never).
        reconnect_after_s: advertise again this long after the loss (None: stay away).
        malformed_every: after every n-th notification also send a truncated copy.
        stall: ``(t, duration)``: hold every notification back during that span, s.
        connection_interval_ms: connection interval, 7.5–4000 ms (BLE's range).
        advertising_interval_ms: advertising interval, ms.
        samples_per_packet: samples per notification (variable-count formats only).

    """

    def __init__(
        self,
        profile: FirmwareProfile,
        location: Location | str,
        samples: SampleBlock,
        link: LocalLink,
        *,
        address: str,
        name: str | None = None,
        clock: EmulatedClock | None = None,
        disconnect_at_s: float | None = None,
        reconnect_after_s: float | None = None,
        malformed_every: int | None = None,
        stall: tuple[float, float] | None = None,
        connection_interval_ms: float = 15.0,
        advertising_interval_ms: float = 20.0,
        samples_per_packet: int | None = None,
    ) -> None:
        if not 7.5 <= connection_interval_ms <= 4000.0:
            raise ValueError(
                f"connection_interval_ms must be 7.5..4000, got {connection_interval_ms}"
            )
        if profile.has_gyro and samples.gyr is None:
            raise ValueError(f"profile {profile.name} needs samples with gyr")
        if malformed_every is not None and malformed_every < 1:
            raise ValueError("malformed_every must be >= 1")
        self.profile = profile
        self.location = Location(location)
        self.samples = samples
        self.link = link
        self.address = address
        self.name = name if name is not None else example_name(profile, self.location)
        self.clock = clock if clock is not None else EmulatedClock()
        self.disconnect_at_s = disconnect_at_s
        self.reconnect_after_s = reconnect_after_s
        self.malformed_every = malformed_every
        self.stall = stall
        self.connection_interval_s = connection_interval_ms / 1000.0
        self.advertising_interval_ms = advertising_interval_ms
        lay = profile.packet
        self._fixed = lay.count_from == "fixed"
        self._spp = (
            lay.samples_per_packet
            if self._fixed
            else (samples_per_packet or lay.samples_per_packet)
        )
        self._index = _sample_index(samples.t)
        self._commands = self._command_table()
        self.log = SensorLog()
        self._device: Device | None = None
        self._notify_char: Characteristic[bytes] | None = None
        self._connection: Connection | None = None
        self._connected_at = 0.0
        self._subscribed = False
        self._started = not any(s.op in _WRITE_OPS for s in profile.commands.start)
        self._dark = False
        self._closed = False
        self._stream_task: asyncio.Task[None] | None = None
        self._fault_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Power on, publish the GATT service and start advertising."""
        self.clock.start()
        controller = Controller(f"sensor-{self.name}", link=self.link)
        device = Device(
            name=self.name,
            address=hci.Address(self.address),
            host=Host(controller, AsyncPipeSink(controller)),
        )
        device.add_service(self._service())
        device.on("connection", self._on_connection)
        await device.power_on()
        self._device = device
        await self._advertise()
        if self.disconnect_at_s is not None:
            self._fault_task = asyncio.create_task(self._link_loss(self.disconnect_at_s))

    async def stop(self) -> None:
        """Stop streaming and advertising, drop the connection, power off."""
        self._closed = True
        for task in (self._fault_task, self._stream_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        device = self._device
        if device is None:
            return
        with contextlib.suppress(Exception):
            await device.stop_advertising()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.disconnect()
        with contextlib.suppress(Exception):
            await device.power_off()
        self._device = None

    async def __aenter__(self) -> EmulatedSensor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def streaming(self) -> bool:
        """True while notifications flow (subscribed and started)."""
        return self._subscribed and self._started and self._connection is not None

    # -- GATT and advertising --------------------------------------------------------------------

    def _service(self) -> Service:
        gatt = self.profile.gatt
        props = Characteristic.Properties
        notify: Characteristic[bytes] = Characteristic(
            gatt.notify, props.NOTIFY, Characteristic.READABLE, b""
        )
        notify.on("subscription", self._on_subscription)
        chars: list[Characteristic[Any]] = [notify]
        writable = Characteristic.READABLE | Characteristic.WRITEABLE
        if gatt.write is not None and gatt.write != gatt.notify:
            chars.append(
                Characteristic(
                    gatt.write,
                    props.WRITE | props.WRITE_WITHOUT_RESPONSE,
                    writable,
                    CharacteristicValue(read=lambda _c: b"", write=self._on_write),
                )
            )
        if gatt.config is not None:
            chars.append(
                Characteristic(
                    gatt.config,
                    props.READ | props.WRITE,
                    writable,
                    CharacteristicValue(read=lambda _c: b"", write=self._on_write),
                )
            )
        self._notify_char = notify
        return Service(gatt.service, chars)

    def _advertising_data(self) -> bytes:
        data = bytearray([2, 0x01, 0x06])  # flags: LE general discoverable, no BR/EDR
        name = self.name.encode()
        data += bytes([len(name) + 1, 0x09]) + name
        service = self.profile.advertised_service
        if service is not None:
            raw = BumbleUUID(service).to_bytes(force_128=False)
            kind = {2: 0x03, 4: 0x05, 16: 0x07}[len(raw)]
            data += bytes([len(raw) + 1, kind]) + raw
        return bytes(data)

    async def _advertise(self) -> None:
        if self._device is None or self._closed or self._dark:
            return
        await self._device.start_advertising(
            advertising_data=self._advertising_data(),
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )
        self.log.advertising_since.append(self.clock.now())

    # -- events from the central ----------------------------------------------------------------

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        self._connected_at = self.clock.now()
        self._subscribed = False
        self._started = not any(s.op in _WRITE_OPS for s in self.profile.commands.start)
        self.log.connections += 1
        connection.on("disconnection", lambda _reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        self._stop_stream()
        if not self._dark and not self._closed:
            asyncio.get_running_loop().create_task(self._advertise())

    def _on_subscription(self, _bearer: object, notify: bool, _indicate: bool) -> None:
        self._subscribed = notify
        self._update_stream()

    def _on_write(self, _connection: object, value: bytes) -> None:
        value = bytes(value)
        self.log.writes.append(value)
        which, rates = self._commands.get(value, ("", set()))
        if which == "configure" and len(rates) == 1:
            self.log.configured_rate_hz = next(iter(rates))
        elif which == "start":
            self._started = True
        elif which == "stop":
            self._started = False
        self._update_stream()

    def _command_table(self) -> dict[bytes, tuple[str, set[float]]]:
        """Write bytes -> (configure|start|stop, rates whose sequence contains them)."""
        table: dict[bytes, tuple[str, set[float]]] = {}
        for rate in self.profile.rates.supported_hz:
            for which in ("configure", "start", "stop"):
                for step in self.profile.steps(which, rate):
                    if step.op in _WRITE_OPS:
                        table.setdefault(step.data, (which, set()))[1].add(rate)
        return table

    # -- streaming -----------------------------------------------------------------------------

    def _update_stream(self) -> None:
        if self.streaming and self._stream_task is None:
            self._stream_task = asyncio.get_running_loop().create_task(self._stream())
        elif not self.streaming:
            self._stop_stream()

    def _stop_stream(self) -> None:
        task, self._stream_task = self._stream_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _packet(self, lo: int) -> int:
        """Stop position of the packet starting at ``lo`` (== lo when none can be made)."""
        n = len(self.samples)
        hi = min(lo + self._spp, n)
        if self._fixed:
            return hi if hi - lo == self._spp else lo
        gaps = np.flatnonzero(np.diff(self._index[lo:hi]) != 1)
        return lo + int(gaps[0]) + 1 if gaps.size else hi

    def _send_time(self, ready: float) -> float:
        ci = self.connection_interval_s
        t0 = self._connected_at
        at = t0 + math.ceil(max(0.0, ready - t0) / ci - 1e-9) * ci
        if self.stall is not None:
            start, duration = self.stall
            if start <= at < start + duration:
                at = t0 + math.ceil((start + duration - t0) / ci) * ci
        return at

    async def _stream(self) -> None:
        s = self.samples
        lo = int(np.searchsorted(s.t, self.clock.now(), side="left"))
        sensor_time = s.t - s.t[0] if self.profile.time_source == "timestamp" else None
        try:
            while self.streaming:
                hi = self._packet(lo)
                if hi == lo:
                    return
                due = self._send_time(float(s.t[hi - 1]))
                await self.clock.sleep_until(due)
                connection, char = self._connection, self._notify_char
                if connection is None or char is None or not self.streaming:
                    return
                payloads = encode(
                    self.profile,
                    s.t[lo:hi],
                    s.acc[lo:hi],
                    None if s.gyr is None else s.gyr[lo:hi],
                    index=self._index[lo:hi],
                    sensor_time=None if sensor_time is None else sensor_time[lo:hi],
                    samples_per_packet=None if self._fixed else self._spp,
                )
                self.log.sent.append((lo, hi))
                now = self.clock.now()
                self.log.send_times.append(now)
                self.log.late_s.append(max(0.0, now - due))
                for payload in payloads:
                    await self._device_notify(connection, char, payload)
                    self.log.notifications += 1
                    if self.malformed_every and self.log.notifications % self.malformed_every == 0:
                        await self._device_notify(connection, char, payload[: len(payload) // 2])
                        self.log.malformed += 1
                lo = hi
        finally:
            if self._stream_task is asyncio.current_task():
                self._stream_task = None

    async def _device_notify(
        self, connection: Connection, char: Characteristic[bytes], payload: bytes
    ) -> None:
        assert self._device is not None
        await self._device.notify_subscriber(connection, char, payload)

    async def _link_loss(self, at: float) -> None:
        await self.clock.sleep_until(at)
        self._dark = True
        self.log.disconnected_at.append(self.clock.now())
        device = self._device
        if device is not None:
            with contextlib.suppress(Exception):
                await device.stop_advertising()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.disconnect(reason=_LINK_LOSS)
        if self.reconnect_after_s is None:
            return
        await self.clock.sleep_until(at + self.reconnect_after_s)
        self._dark = False
        await self._advertise()


def emulated_sensors(
    profile: FirmwareProfile,
    blocks: dict[Location, SampleBlock],
    link: LocalLink,
    *,
    clock: EmulatedClock | None = None,
    **options: Any,
) -> list[EmulatedSensor]:
    """One emulated sensor per block (e.g. ``simulate(...).blocks``), with distinct addresses.

    ``options`` go to every :class:`EmulatedSensor` (faults, connection interval, ...).
    """
    shared = clock if clock is not None else EmulatedClock()
    return [
        EmulatedSensor(
            profile,
            location,
            block,
            link,
            address=f"C0:AC:00:00:00:{i + 1:02X}",
            clock=shared,
            **options,
        )
        for i, (location, block) in enumerate(sorted(blocks.items()))
    ]


async def serve(
    sensors: list[EmulatedSensor], *, transport: str | None = None, duration_s: float | None = None
) -> None:
    """Run emulated sensors until ``duration_s`` (emulated) has passed, or until cancelled.

    Args:
        sensors: sensors sharing one link and clock (see :func:`emulated_sensors`).
        transport: a bumble HCI transport whose other end is a host stack, e.g. ``vhci``
            (Linux: ``modprobe hci_vhci``, root): a bumble controller on that transport joins
            the sensors' link, so the host's Bluetooth stack (BlueZ) gets a new adapter that
            sees them and ``coach scan`` / ``coach run`` work with the platform backend.
            None: in-process only (use :class:`~coach.sources.bumble_backend.BumbleRadio`).
        duration_s: emulated seconds to run (None: until cancelled).

    """
    async with contextlib.AsyncExitStack() as stack:
        # sensors first: the host's stack times out on a new adapter while the loop is busy
        for sensor in sensors:
            await sensor.start()
            stack.push_async_callback(sensor.stop)
        if transport is not None:
            from bumble.transport import open_transport

            hci_transport = await stack.enter_async_context(await open_transport(transport))
            Controller(
                "coach-emulate-host",
                host_source=hci_transport.source,
                host_sink=hci_transport.sink,
                link=sensors[0].link,
            )
        if duration_s is None:
            await asyncio.Event().wait()
        else:
            await sensors[0].clock.sleep_until(duration_s)
