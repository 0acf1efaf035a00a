"""A bleak backend over Google's bumble: bleak's real API on an in-process radio.

The real ``BleakClient``/``BleakScanner`` API runs on a radio that lives inside this process
(design.md section 5).

bleak 3.x has no bumble backend of its own, but ``BleakClient(..., backend=...)`` and
``BleakScanner(backend=...)`` accept any :class:`~bleak.backends.client.BaseBleakClient` /
:class:`~bleak.backends.scanner.BaseBleakScanner` subclass. :class:`BumbleRadio` owns a bumble
central :class:`~bumble.device.Device` whose emulated controller sits on a
:class:`~bumble.link.LocalLink`; peripherals on the same link (e.g.
:class:`coach.sources.emulated_sensor.EmulatedSensor`) are then scanned, connected, discovered,
written to and notified through bumble's real host stack (HCI, L2CAP, ATT, GATT), with no
kernel Bluetooth.

Example::

    radio = BumbleRadio(link)
    async with BleakScanner(backend=radio.scanner_backend) as scanner: ...
    client = BleakClient(device, backend=radio.client_backend)

Limits (of bumble's emulated link, not of bleak): no radio timing (packets are delivered at
once; the emulated sensor paces itself), the scan response is a copy of the advertising data,
advertising data is not limited to 31 bytes, and pairing is not supported (the sensors coach
knows do not need it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import att, hci
from bumble.controller import Controller
from bumble.core import UUID as BumbleUUID  # noqa: N811
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

#: ATT MTU the central asks for (BlueZ and the mobile stacks ask for 247 or more).
DEFAULT_MTU = 247

# Advertising data types (Bluetooth Core Supplement, part A, section 1).
_AD_NAMES = (0x09, 0x08)  # complete, shortened local name
_AD_UUIDS = {0x02: 2, 0x03: 2, 0x04: 4, 0x05: 4, 0x06: 16, 0x07: 16}
_AD_SERVICE_DATA = {0x16: 2, 0x20: 4, 0x21: 16}
_AD_TX_POWER = 0x0A
_AD_MANUFACTURER = 0xFF
_BASE_UUID_TAIL = "-0000-1000-8000-00805f9b34fb"


def uuid_str(value: BumbleUUID | bytes) -> str:
    """Bleak's form of a UUID (lower-case, 128-bit, dashed) from a bumble UUID or LE bytes."""
    raw = value if isinstance(value, bytes) else value.to_bytes(force_128=False)
    if len(raw) in (2, 4):
        return f"{int.from_bytes(raw, 'little'):08x}{_BASE_UUID_TAIL}"
    return str(uuid.UUID(bytes=bytes(reversed(raw))))


def parse_advertising_data(structures: list[tuple[int, bytes]], rssi: int) -> AdvertisementData:
    """Bleak's :class:`AdvertisementData` from raw AD structures ``(type, bytes)``."""
    name: str | None = None
    uuids: list[str] = []
    service_data: dict[str, bytes] = {}
    manufacturer: dict[int, bytes] = {}
    tx_power: int | None = None
    for ad_type, data in structures:
        if ad_type in _AD_NAMES and name is None:
            name = data.decode("utf-8", errors="replace")
        elif ad_type in _AD_UUIDS:
            width = _AD_UUIDS[ad_type]
            for i in range(0, len(data) - width + 1, width):
                value = uuid_str(data[i : i + width])
                if value not in uuids:
                    uuids.append(value)
        elif ad_type in _AD_SERVICE_DATA:
            width = _AD_SERVICE_DATA[ad_type]
            if len(data) >= width:
                service_data[uuid_str(data[:width])] = bytes(data[width:])
        elif ad_type == _AD_MANUFACTURER and len(data) >= 2:
            manufacturer[int.from_bytes(data[:2], "little")] = bytes(data[2:])
        elif ad_type == _AD_TX_POWER and data:
            tx_power = int.from_bytes(data[:1], "little", signed=True)
    return AdvertisementData(name, manufacturer, service_data, uuids, tx_power, rssi, ())


class BumbleRadio:
    """An in-process BLE radio for bleak: a bumble central on a :class:`LocalLink`.

    Args:
        link: the link the peripherals are on (a new one when None).
        address: the central's static random address.
        mtu: ATT MTU requested after each connection.

    Use :attr:`client_backend` and :attr:`scanner_backend` as bleak's ``backend=``. Any number
    of clients and scanners may share one radio; connection set-ups are serialised (one
    pending LE connection per controller, as on real controllers).

    """

    def __init__(
        self, link: LocalLink | None = None, *, address: str = "F0:F0:F0:F0:F0:F0", mtu: int = 247
    ) -> None:
        self.link = link if link is not None else LocalLink()  # type: ignore[no-untyped-call]
        self.mtu = mtu
        self._address = address
        self._device: Device | None = None
        self._power_lock = asyncio.Lock()
        self.connect_lock = asyncio.Lock()
        self._scanners = 0
        self._scan_lock = asyncio.Lock()
        #: last advertisement seen per address string (address type for connecting by string)
        self.seen: dict[str, Advertisement] = {}
        self.client_backend = self._client_class()
        self.scanner_backend = self._scanner_class()

    async def central(self) -> Device:
        """The central device, powered on at first use."""
        async with self._power_lock:
            if self._device is None:
                controller = Controller("coach-central", link=self.link)
                device = Device(
                    name="coach",
                    address=hci.Address(self._address),
                    host=Host(controller, AsyncPipeSink(controller)),
                )
                await device.power_on()
                device.on("advertisement", self._remember)
                self._device = device
            return self._device

    def _remember(self, advertisement: Advertisement) -> None:
        self.seen[str(advertisement.address)] = advertisement

    async def scanning(self, on: bool) -> Device:
        """Reference-counted scan start/stop shared by every scanner of this radio."""
        device = await self.central()
        async with self._scan_lock:
            self._scanners += 1 if on else -1
            if on and self._scanners == 1:
                await device.start_scanning(filter_duplicates=False)
            elif not on and self._scanners == 0 and device.is_scanning:
                await device.stop_scanning()
        return device

    async def close(self) -> None:
        """Disconnect everything and power the central off."""
        if self._device is None:
            return
        for connection in list(self._device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        with contextlib.suppress(Exception):
            await self._device.power_off()
        self._device = None

    def _client_class(self) -> type[BaseBleakClient]:
        radio = self

        class Client(BumbleClient):
            _radio = radio

        Client.__name__ = Client.__qualname__ = "BumbleClient"
        return Client

    def _scanner_class(self) -> type[BaseBleakScanner]:
        radio = self

        class Scanner(BumbleScanner):
            _radio = radio

        Scanner.__name__ = Scanner.__qualname__ = "BumbleScanner"
        return Scanner


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend over a :class:`BumbleRadio` (use ``radio.scanner_backend``)."""

    _radio: BumbleRadio

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._device: Device | None = None

    async def start(self) -> None:
        """Start receiving advertisements."""
        if self._device is not None:
            return
        self.seen_devices = {}
        self._device = await self._radio.scanning(True)
        self._device.on("advertisement", self._on_advertisement)

    async def stop(self) -> None:
        """Stop receiving advertisements."""
        if self._device is None:
            return
        self._device.remove_listener("advertisement", self._on_advertisement)
        self._device = None
        await self._radio.scanning(False)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        structures = [(int(t), bytes(d)) for t, d in advertisement.data.ad_structures]
        adv = parse_advertising_data(structures, int(advertisement.rssi))
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        address = str(advertisement.address)
        device = self.create_or_update_device(
            address, address, adv.local_name, advertisement.address, adv
        )
        self.call_detection_callbacks(device, adv)


class BumbleClient(BaseBleakClient):
    """bleak client backend over a :class:`BumbleRadio` (use ``radio.client_backend``)."""

    _radio: BumbleRadio

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._ble_device = (
            address_or_ble_device if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._closing = False
        self._gone: asyncio.Event = asyncio.Event()
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # -- properties ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The advertised name, else the address."""
        if self._ble_device is not None and self._ble_device.name:
            return self._ble_device.name
        return self.address

    @property
    def mtu_size(self) -> int:
        """The negotiated ATT MTU."""
        return int(self._connection.att_mtu) if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        return self._connection is not None

    # -- connection -----------------------------------------------------------------------------

    async def _resolve_address(self) -> hci.Address:
        if self._ble_device is not None and isinstance(self._ble_device.details, hci.Address):
            return self._ble_device.details
        wanted = self.address.upper()
        found = self._radio.seen.get(wanted)
        if found is not None:
            return found.address
        scanner = self._radio.scanner_backend(None, None)
        event = asyncio.Event()
        remove = scanner.register_detection_callback(
            lambda d, _a: event.set() if d.address.upper() == wanted else None
        )
        await scanner.start()
        try:
            await asyncio.wait_for(event.wait(), self._timeout)
        except TimeoutError:
            raise BleakDeviceNotFoundError(self.address, f"{self.address} not found") from None
        finally:
            remove()
            await scanner.stop()
        return self._radio.seen[wanted].address

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange the MTU and discover every service, characteristic, descriptor."""
        if pair:
            log.info("bumble backend: pairing is not supported, connecting without it")
        address = await self._resolve_address()
        central = await self._radio.central()
        async with self._radio.connect_lock:
            try:
                connection = await central.connect(address, timeout=self._timeout)
            except Exception as error:
                raise BleakError(f"could not connect to {self.address}: {error}") from error
        self._connection = connection
        self._gone = asyncio.Event()
        self._closing = False
        connection.on("disconnection", self._on_disconnection)
        try:
            self._peer = Peer(connection)
            await self._peer.request_mtu(self._radio.mtu)
            self.services = await self._discover(self._peer)
        except Exception:
            await self.disconnect()
            raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for service_proxy in peer.services:
            service = BleakGATTService(
                service_proxy, service_proxy.handle, uuid_str(service_proxy.uuid)
            )
            collection.add_service(service)
            await service_proxy.discover_characteristics()
            for char_proxy in service_proxy.characteristics:
                await char_proxy.discover_descriptors()
                props: list[CharacteristicPropertyName] = [
                    name
                    for bit, name in CHARACTERISTIC_PROPERTIES.items()
                    if int(char_proxy.properties) & bit
                ]
                char = BleakGATTCharacteristic(
                    char_proxy,
                    char_proxy.handle,
                    uuid_str(char_proxy.uuid),
                    props,
                    lambda: self.mtu_size - 3,
                    service,
                )
                collection.add_characteristic(char)
                for desc_proxy in char_proxy.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            desc_proxy, desc_proxy.handle, uuid_str(desc_proxy.type), char
                        )
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        solicited = self._closing
        self._connection = None
        self._peer = None
        self.services = None
        self._subscribers.clear()
        self._gone.set()
        if not solicited and self._disconnected_callback is not None:
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def disconnect(self) -> None:
        """Disconnect and wait for the link to be gone (no-op when not connected)."""
        connection = self._connection
        if connection is None:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            await connection.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._gone.wait(), 5.0)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Not supported by this backend."""
        raise BleakError("the bumble backend does not support pairing")

    async def unpair(self) -> None:
        """Not supported by this backend."""
        raise BleakError("the bumble backend does not support pairing")

    # -- I/O -----------------------------------------------------------------------------------

    def _require(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic value."""
        peer = self._require()
        return bytearray(await _att(peer.read_value(characteristic.handle)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor value."""
        peer = self._require()
        return bytearray(await _att(peer.read_value(descriptor.handle)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write a characteristic (request when ``response``, else command)."""
        peer = self._require()
        await _att(peer.write_value(characteristic.handle, bytes(data), with_response=response))

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Write a descriptor (always a request)."""
        peer = self._require()
        await _att(peer.write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Enable notifications (CCCD write) and route them to ``callback``."""
        self._require()

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        await _att(characteristic.obj.subscribe(subscriber, prefer_notify=True))
        self._subscribers[characteristic.handle] = subscriber

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Disable notifications (CCCD write)."""
        self._require()
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await _att(characteristic.obj.unsubscribe(subscriber, force=True))


async def _att(operation: Any) -> Any:
    """Await a bumble GATT operation, mapping ATT errors to bleak's protocol error."""
    try:
        return await operation
    except att.ATT_Error as error:
        raise BleakGATTProtocolError(int(error.error_code)) from error
