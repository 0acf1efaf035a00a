"""Live sensors over Bluetooth LE, through bleak only: scan, connect, stream, reconnect.

* :func:`scan` lists the devices in range that a firmware profile recognises (advertised
  service or name pattern).
* :class:`SensorStream` runs the configured sensors of a session: it finds and connects them at
  start (a required sensor that does not appear raises :class:`~coach.errors.DeviceError` naming
  it; an optional one is reported ``missing`` and searched for in the background), sends each
  profile's configure and start writes, and subscribes to notifications. The notification
  callback only stamps the host time (session clock) and puts a
  :class:`~coach.sources.recording.RawPacket` on a bounded queue (the oldest packet is dropped
  and counted when it is full) and returns. A lost link is reconnected with jittered
  exponential backoff while the other sensors go on; every change is a :class:`SensorStatus`
  on :attr:`SensorStream.status` for the runtime (``StreamCore.sensor_status``, cue muting).
  :meth:`SensorStream.stop` sends the stop writes, stops notifications and disconnects.

Everything goes through the public ``bleak.BleakClient`` / ``bleak.BleakScanner`` API; the
``backend`` argument swaps the platform backend (BlueZ on Linux) for another one, e.g.
:class:`coach.sources.bumble_backend.BumbleRadio` in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from coach.errors import CoachError, DeviceError, ProfileError
from coach.profiles import FirmwareProfile, ResolvedStep, available_profiles, load_profile
from coach.sources.recording import RawPacket
from coach.types import Location

log = logging.getLogger(__name__)

_T = TypeVar("_T")
Clock = Callable[[], float]


# -- plumbing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BleBackend:
    """bleak backends to use instead of the platform's (None = the platform's, BlueZ on Linux)."""

    client: type[BaseBleakClient] | None = None
    scanner: type[BaseBleakScanner] | None = None


class DropOldestQueue(asyncio.Queue[_T], Generic[_T]):
    """A bounded queue whose ``put_nowait`` never blocks or raises.

    When it is full, the oldest item is dropped and counted in :attr:`dropped`.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        super().__init__(maxsize)
        self.dropped = 0

    def put_nowait(self, item: _T) -> None:
        """Put ``item``; drop the oldest when full."""
        if self.full():
            self.get_nowait()
            self.task_done()
            self.dropped += 1
        super().put_nowait(item)


class SessionClock:
    """Session time, s: ``time.monotonic()`` since construction (or since ``t0``)."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0

    def __call__(self) -> float:
        """Seconds since the session started."""
        return time.monotonic() - self.t0


@dataclass(frozen=True)
class ReconnectPolicy:
    """Timing of finding and reconnecting sensors (s).

    Attempt *k* (1, 2, ...) that fails waits ``d/2 + U(0, d/2)`` with
    ``d = min(max_delay_s, min_delay_s · 2^(k−1))`` (exponential backoff, equal jitter) before
    the next. Each attempt scans up to ``scan_s`` for the sensor (it connects as soon as the
    sensor advertises) and allows ``connect_timeout_s`` for connection and GATT discovery.
    """

    min_delay_s: float = 0.2
    max_delay_s: float = 1.0
    scan_s: float = 5.0
    connect_timeout_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait after failed attempt ``attempt`` (1-based)."""
        d = min(self.max_delay_s, self.min_delay_s * 2.0 ** max(0, attempt - 1))
        return d / 2.0 + (rng or random).uniform(0.0, d / 2.0)


# -- what to connect to ----------------------------------------------------------------------


class SensorConfigLike(Protocol):
    """What :class:`SensorTarget` needs of a config entry (``coach.config.SensorConfig``)."""

    @property
    def location(self) -> str:
        """Location name."""

    @property
    def profile(self) -> str:
        """Firmware profile name."""

    @property
    def address(self) -> str | None:
        """Bluetooth address, if given."""

    @property
    def name(self) -> str | None:
        """Advertised name, if given."""

    @property
    def required(self) -> bool:
        """Whether the run needs it."""


@dataclass(frozen=True)
class SensorTarget:
    """One sensor to stream from.

    Attributes:
        location: where it is worn.
        profile: its firmware profile.
        address: Bluetooth address (UUID on macOS); matched case-insensitively.
        name: advertised name, matched exactly (used when no address is given).
        required: a required sensor that is not found at start is an error; an optional one is
            searched for in the background and the run starts without it.
        rate_hz: sample rate to configure (the profile default when None).

    With neither address nor name, the first device that the profile recognises and no other
    target claims is taken (only allowed for one target per profile).

    """

    location: Location
    profile: FirmwareProfile
    address: str | None = None
    name: str | None = None
    required: bool = True
    rate_hz: float | None = None

    @classmethod
    def from_config(
        cls, sensor: SensorConfigLike, profiles: Mapping[str, FirmwareProfile] | None = None
    ) -> SensorTarget:
        """A target from a config entry; the profile by name from ``profiles`` or the bundle."""
        profile = (profiles or {}).get(sensor.profile) or load_profile(sensor.profile)
        return cls(Location(sensor.location), profile, sensor.address, sensor.name, sensor.required)

    def describe(self) -> str:
        """Human words for messages, e.g. ``left_shank (coach-sim, name 'coach-left-shank')``."""
        how = (
            f"address {self.address}"
            if self.address
            else f"name {self.name!r}"
            if self.name
            else "any device it recognises"
        )
        return f"{self.location.value} ({self.profile.name}, {how})"

    def matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        """True when an advertisement is this sensor."""
        if self.address is not None:
            return device.address.lower() == self.address.lower()
        name = adv.local_name or device.name
        if self.name is not None:
            return name == self.name
        return recognises(self.profile, name, adv.service_uuids)


def recognises(profile: FirmwareProfile, name: str | None, service_uuids: Iterable[str]) -> bool:
    """True when an advertisement's service list or name fits the profile."""
    service = profile.advertised_service
    if service is not None and service in {u.lower() for u in service_uuids}:
        return True
    return profile.matches_name(name)


# -- scanning --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoundDevice:
    """A device seen while scanning.

    Attributes:
        address: Bluetooth address (UUID on macOS).
        name: advertised name (None when it advertises none).
        rssi: signal strength of the last advertisement, dBm.
        profile_name: the firmware profile that recognises it (None: unknown device).

    """

    address: str
    name: str | None
    rssi: int
    profile_name: str | None


def bundled_profiles() -> list[FirmwareProfile]:
    """Every bundled profile that loads (a broken one is logged and skipped)."""
    out = []
    for name in available_profiles():
        try:
            out.append(load_profile(name))
        except ProfileError as error:
            log.warning("skipping profile %s: %s", name, error)
    return out


async def scan(
    timeout_s: float = 5.0,
    profiles: Sequence[FirmwareProfile] | None = None,
    backend: BleBackend | None = None,
    *,
    include_unknown: bool = False,
) -> list[FoundDevice]:
    """Devices in range for ``timeout_s``, strongest first, with the profile recognising each.

    Args:
        timeout_s: how long to listen, s.
        profiles: profiles to match (all bundled ones when None); the first match wins, an
            advertised service before a name pattern.
        backend: bleak backends (platform default when None).
        include_unknown: also list devices no profile recognises (``profile_name`` None).

    Raises:
        DeviceError: Bluetooth is not available (adapter off or missing).

    """
    known = list(profiles) if profiles is not None else bundled_profiles()
    try:
        seen = await BleakScanner.discover(timeout_s, return_adv=True, **_scanner_kwargs(backend))
    except BleakError as error:
        raise DeviceError(
            f"cannot scan for Bluetooth devices: {error} (is Bluetooth on?)"
        ) from None
    except OSError as error:
        raise bluetooth_unavailable(error) from None
    found = []
    for device, adv in seen.values():
        name = adv.local_name or device.name
        uuids = {u.lower() for u in adv.service_uuids}
        match = next((p for p in known if p.advertised_service in uuids), None) or next(
            (p for p in known if p.matches_name(name)), None
        )
        if match is not None or include_unknown:
            profile_name = match.name if match is not None else None
            found.append(FoundDevice(device.address, name, adv.rssi, profile_name))
    return sorted(found, key=lambda d: (-d.rssi, d.address))


class BluetoothUnavailableError(DeviceError):
    """The machine's Bluetooth stack cannot be reached at all (no adapter, no BlueZ)."""


def bluetooth_unavailable(error: OSError) -> DeviceError:
    """The error for a machine whose Bluetooth stack cannot be reached at all."""
    return BluetoothUnavailableError(
        f"Bluetooth is not available on this machine ({error.strerror or error}): on Linux "
        "coach needs BlueZ (bluetoothd, reached over D-Bus) and a Bluetooth adapter. Check "
        "`bluetoothctl show`; to try coach without sensors use `coach run --emulate`."
    )


def _scanner_kwargs(backend: BleBackend | None) -> dict[str, Any]:
    if backend is not None and backend.scanner is not None:
        return {"backend": backend.scanner}
    return {}


# -- status ----------------------------------------------------------------------------------


class LinkState(enum.StrEnum):
    """States of one sensor link reported on :attr:`SensorStream.status`."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    MISSING = "missing"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SensorStatus:
    """A change of one sensor's link at session time ``t`` (s).

    Attributes:
        location: the sensor.
        state: what happened.
        t: session time, s.
        attempt: reconnect attempt number (``reconnecting``), else 0.
        detail: human words (the device, the error).

    """

    location: Location
    state: LinkState
    t: float
    attempt: int = 0
    detail: str = ""

    @property
    def connected(self) -> bool:
        """True when data can flow (what ``StreamCore.sensor_status`` wants)."""
        return self.state is LinkState.CONNECTED


# -- one sensor ------------------------------------------------------------------------------


@dataclass
class LinkStats:
    """Counters of one link."""

    packets: int = 0
    connects: int = 0
    disconnects: int = 0
    failed_attempts: int = 0
    last_packet_t: float | None = None
    reconnect_s: list[float] = field(default_factory=list)


class SensorLink:
    """One sensor: connect, configure, start, stream, reconnect, stop (through bleak).

    Create it through :class:`SensorStream`, which owns the queues and the clock.
    """

    def __init__(
        self,
        target: SensorTarget,
        packets: DropOldestQueue[RawPacket],
        status: DropOldestQueue[SensorStatus],
        clock: Clock,
        *,
        backend: BleBackend | None = None,
        policy: ReconnectPolicy | None = None,
        claimed: set[str] | None = None,
    ) -> None:
        self.target = target
        self.location = target.location
        self.rate_hz = target.profile.check_rate(target.rate_hz)
        self._packets = packets
        self._status = status
        self._clock = clock
        self._backend = backend or BleBackend()
        self.policy = policy or ReconnectPolicy()
        self._claimed = claimed if claimed is not None else set()
        self.client: BleakClient | None = None
        self.device: BLEDevice | None = None
        self.stats = LinkStats()
        self._lost = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._lost_at: float | None = None

    # -- the notification callback: stamp, enqueue, return ---------------------------------------

    def _on_notify(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        t = self._clock()
        self._packets.put_nowait(RawPacket(self.location, t, bytes(data)))
        self.stats.packets += 1
        self.stats.last_packet_t = t

    # -- connecting ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the link is up and streaming was started."""
        return self.client is not None and self.client.is_connected

    def _emit(self, state: LinkState, attempt: int = 0, detail: str = "") -> None:
        self._status.put_nowait(SensorStatus(self.location, state, self._clock(), attempt, detail))

    def _wanted(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        anonymous = self.target.address is None and self.target.name is None
        if anonymous and device.address.lower() in self._claimed:
            return False
        return self.target.matches(device, adv)

    async def find(self, timeout_s: float) -> BLEDevice | None:
        """Scan until this sensor advertises or ``timeout_s`` passes.

        Raises:
            DeviceError: the system has no usable Bluetooth stack (no adapter, no BlueZ).

        """
        try:
            return await BleakScanner.find_device_by_filter(
                self._wanted, timeout=timeout_s, **_scanner_kwargs(self._backend)
            )
        except OSError as error:
            raise bluetooth_unavailable(error) from None

    async def open(self, device: BLEDevice) -> None:
        """Connect to ``device``, check the service, run the configure and start steps."""
        profile = self.target.profile
        client = BleakClient(
            device,
            disconnected_callback=self._on_disconnected,
            timeout=self.policy.connect_timeout_s,
            backend=self._backend.client,
        )
        await client.connect()
        try:
            if client.services.get_service(profile.gatt.service) is None:
                raise DeviceError(
                    f"{self.target.describe()}: {device.name or device.address} has no "
                    f"{profile.gatt.service} service: is it a {profile.device} running the "
                    f"firmware of profile {profile.name}?"
                )
            self.client = client
            for step in profile.steps("configure", self.rate_hz) + profile.steps(
                "start", self.rate_hz
            ):
                await self._do(client, step)
        except BaseException:
            self.client = None
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise
        self.device = device
        self._claimed.add(device.address.lower())
        self._lost.clear()
        self.stats.connects += 1
        if self._lost_at is not None:
            self.stats.reconnect_s.append(self._clock() - self._lost_at)
            self._lost_at = None
        self._emit(LinkState.CONNECTED, detail=f"{device.name or ''} {device.address}".strip())

    async def _do(self, client: BleakClient, step: ResolvedStep) -> None:
        if step.op == "notify":
            await client.start_notify(step.uuid, self._on_notify)
        elif step.op == "stop_notify":
            await client.stop_notify(step.uuid)
        else:
            await client.write_gatt_char(step.uuid, step.data, response=step.op == "write")

    def _on_disconnected(self, client: BleakClient) -> None:
        if client is not self.client:
            return
        self.client = None
        if self._stopping:
            return
        self._lost_at = self._clock()
        self.stats.disconnects += 1
        self._emit(LinkState.DISCONNECTED)
        self._lost.set()

    # -- supervision -----------------------------------------------------------------------------

    def supervise(self) -> None:
        """Start the background task that (re)connects whenever the link is down."""
        if self._task is None:
            if not self.connected:
                self._lost.set()
            self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            await self._lost.wait()
            attempt = 0
            while not self._stopping and not self.connected:
                attempt += 1
                self._emit(LinkState.RECONNECTING, attempt)
                try:
                    device = await self.find(self.policy.scan_s)
                    if device is not None:
                        await self.open(device)
                        break
                    detail = "not advertising"
                except (BleakError, CoachError, TimeoutError, OSError) as error:
                    detail = str(error)
                self.stats.failed_attempts += 1
                log.info("%s: attempt %d failed: %s", self.target.describe(), attempt, detail)
                await asyncio.sleep(self.policy.delay(attempt))

    async def stop(self) -> None:
        """Stop supervising; send the stop steps, stop notifications, disconnect."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            for step in self.target.profile.steps("stop", self.rate_hz):
                try:
                    await asyncio.wait_for(self._do(client, step), 2.0)
                except (BleakError, TimeoutError, OSError) as error:
                    log.info("%s: stop step failed: %s", self.target.describe(), error)
            with contextlib.suppress(BleakError, TimeoutError, OSError):
                await asyncio.wait_for(client.disconnect(), 5.0)
        self._emit(LinkState.STOPPED)


# -- the session's sensors -------------------------------------------------------------------


class SensorStream:
    """The configured sensors of a live session, streaming onto one queue.

    Args:
        targets: the sensors (see :meth:`SensorTarget.from_config`).
        backend: bleak backends (platform default when None).
        clock: session clock, s (``time.monotonic`` since construction when None). The
            notification callback stamps every packet with it.
        queue_size: bound of :attr:`packets` (the oldest packet is dropped when full).
        policy: find / reconnect timing.

    Use ``async with SensorStream(...) as stream`` (start + stop), then read
    :attr:`packets` (or ``async for packet in stream``) and :attr:`status`.

    """

    def __init__(
        self,
        targets: Sequence[SensorTarget],
        *,
        backend: BleBackend | None = None,
        clock: Clock | None = None,
        queue_size: int = 4096,
        policy: ReconnectPolicy | None = None,
    ) -> None:
        locations = [t.location for t in targets]
        if len(set(locations)) != len(locations):
            raise DeviceError("each location may have one sensor")
        anonymous = [t.profile.name for t in targets if t.address is None and t.name is None]
        repeated = sorted({p for p in anonymous if anonymous.count(p) > 1})
        if repeated:
            raise DeviceError(
                f"several {', '.join(repeated)} sensors without address or name: give each "
                "an address or name in the config (see `coach scan`), or left and right "
                "could be swapped"
            )
        self.clock: Clock = clock if clock is not None else SessionClock()
        self.packets: DropOldestQueue[RawPacket] = DropOldestQueue(queue_size)
        self.status: DropOldestQueue[SensorStatus] = DropOldestQueue(1024)
        self.policy = policy or ReconnectPolicy()
        claimed: set[str] = set()
        self.links: dict[Location, SensorLink] = {
            t.location: SensorLink(
                t,
                self.packets,
                self.status,
                self.clock,
                backend=backend,
                policy=self.policy,
                claimed=claimed,
            )
            for t in targets
        }

    @property
    def dropped(self) -> int:
        """Packets dropped because the consumer fell behind."""
        return self.packets.dropped

    async def start(self, timeout_s: float = 20.0) -> list[Location]:
        """Find and connect every sensor; return the connected locations.

        Raises:
            DeviceError: a required sensor was not found or could not be set up within
                ``timeout_s`` (the message names each one and what to check); the sensors
                already connected are disconnected first.

        """
        results = await asyncio.gather(
            *(self._first_connect(link, timeout_s) for link in self.links.values())
        )
        failed = [
            (link, why) for link, why in zip(self.links.values(), results, strict=True) if why
        ]
        fatal = [(link, why) for link, why in failed if link.target.required]
        if fatal:
            await self.stop()
            lines = "; ".join(f"{link.target.describe()}: {why}" for link, why in fatal)
            raise DeviceError(
                f"required sensor(s) not ready after {timeout_s:g} s: {lines}. Check that each "
                "is switched on, charged, in range and not connected to another device (phone "
                "app); `coach scan` lists the sensors in range. Set required = false in the "
                "config to start without a sensor."
            )
        for link, why in failed:
            link._emit(LinkState.MISSING, detail=why)
        for link in self.links.values():
            link.supervise()
        return [loc for loc, link in self.links.items() if link.connected]

    async def _first_connect(self, link: SensorLink, timeout_s: float) -> str:
        """'' when connected, else why not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        why = f"not found within {timeout_s:g} s"
        attempt = 0
        while (left := deadline - loop.time()) > 0:
            attempt += 1
            try:
                device = await link.find(left)
                if device is None:
                    return why
                await asyncio.wait_for(link.open(device), max(0.1, deadline - loop.time()))
                return ""
            except BluetoothUnavailableError:
                raise
            except DeviceError as error:
                return str(error)
            except (BleakError, TimeoutError, OSError) as error:
                why = f"found but could not connect: {error or type(error).__name__}"
                await asyncio.sleep(
                    min(link.policy.delay(attempt), max(0.0, deadline - loop.time()))
                )
        return why

    async def stop(self) -> None:
        """Stop every sensor cleanly (stop writes, notifications off, disconnect)."""
        await asyncio.gather(*(link.stop() for link in self.links.values()))

    async def __aenter__(self) -> SensorStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def __aiter__(self) -> AsyncIterator[RawPacket]:
        while True:
            yield await self.packets.get()
