"""Raw recordings read back: the MCAP files that :mod:`coach.sinks.recorder` writes.

A recording holds every BLE notification before decoding (payload, host receive time in session
seconds, sensor location), the effective config and firmware profiles it ran with, the software
version and the session start wall time; see the recorder's docstring for the layout
(``coach.recording/1``). :func:`open_recording` reads the metadata at the start of the file and
checks the footer at its end; :meth:`Recording.iter_raw` then streams the packets in file order.

A recording cut short (crash, power loss, full disk) has no footer and may end mid-record. It is
read by a linear scan of complete records: everything up to the last complete chunk is
returned, :attr:`Recording.truncated` is True and a warning is logged; truncation never raises.
A file that is not MCAP, or an MCAP file that is not a coach recording, raises
:class:`~coach.errors.SessionFormatError`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from mcap.data_stream import ReadDataStream
from mcap.records import Attachment, Channel, Header, Metadata

from coach.errors import SessionFormatError
from coach.types import Location

log = logging.getLogger(__name__)

# The format as written by coach.sinks.recorder (kept equal by a test).
FORMAT = "coach.recording/1"
SESSION_METADATA = "coach.session"
MCAP_PROFILE = "coach"
RAW_ENCODING = "coach.raw.v1"
CONFIG_ATTACHMENT = "config.toml"
PROFILE_ATTACHMENT_PREFIX = "profiles/"

MAGIC = b"\x89MCAP0\r\n"
# MCAP opcodes (https://mcap.dev/spec).
_HEADER, _FOOTER, _SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _MESSAGE_INDEX = 1, 2, 3, 4, 5, 6, 7
_ATTACHMENT, _METADATA, _DATA_END = 9, 12, 15
_RECORD = struct.Struct("<BQ")  # opcode, body length
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_CHUNK_HEAD = struct.Struct("<QQQII")  # start, end, uncompressed size, crc, compression length
_F64 = struct.Struct("<d")
_FOOTER_BYTES = 9 + 20  # footer record: opcode, length, summary start, offset start, crc


@dataclass(frozen=True, slots=True)
class RawPacket:
    """One BLE notification as received.

    Attributes:
        location: the sensor's location.
        host_time_s: host receive time, session s.
        payload: the notification bytes.

    """

    location: Location
    host_time_s: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class JsonMessage:
    """A decoded value recorded on a JSON channel (``/events``, ``/strides``, ...).

    Attributes:
        topic: the channel topic.
        t: session time of the message, s (from its MCAP log time, ±1 ns).
        data: the decoded JSON object.

    """

    topic: str
    t: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedSensor:
    """The sensor recorded at one location and the firmware profile it ran with.

    Attributes:
        location: where it was worn.
        profile: firmware profile name.
        profile_toml: the profile's TOML text as used (None when the file lost it).

    """

    location: Location
    profile: str
    profile_toml: str | None


@dataclass(frozen=True, slots=True)
class LocationSummary:
    """What a recording holds for one location.

    Attributes:
        location: sensor location.
        packets: number of notifications.
        first_host_time_s: earliest host receive time, session s (None without packets).
        last_host_time_s: latest host receive time, session s (None without packets).

    """

    location: Location
    packets: int
    first_host_time_s: float | None
    last_host_time_s: float | None


@dataclass(frozen=True, slots=True)
class _Channel:
    topic: str
    encoding: str
    location: Location | None  # set for raw channels only


class _DamagedError(Exception):
    """A complete record that cannot be parsed (bit rot, foreign garbage)."""


def _parse(record: Callable[[ReadDataStream], Any], body: bytes) -> Any:
    try:
        return record(ReadDataStream(BytesIO(body)))
    except Exception as error:  # mcap raises struct.error, EndOfFile, UnicodeDecodeError, ...
        raise _DamagedError(f"unreadable {getattr(record, '__qualname__', 'record')}") from error


def _decompress(compression: str, data: bytes, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompress(data, max_output_size=size))
    if compression == "lz4":
        import lz4.frame  # type: ignore[import-untyped]

        return bytes(lz4.frame.decompress(data))
    raise _DamagedError(f"unknown chunk compression {compression!r}")


def _chunk_records(body: bytes) -> bytes:
    """The uncompressed, CRC-checked records of a chunk record body."""
    try:
        _start, _end, size, crc, name_len = _CHUNK_HEAD.unpack_from(body, 0)
        offset = _CHUNK_HEAD.size
        compression = body[offset : offset + name_len].decode()
        offset += name_len
        (records_len,) = struct.unpack_from("<Q", body, offset)
        offset += 8
        data = _decompress(compression, body[offset : offset + records_len], size)
    except _DamagedError:
        raise
    except Exception as error:
        raise _DamagedError("unreadable chunk") from error
    if len(data) != size or (crc != 0 and zlib.crc32(data) != crc):
        raise _DamagedError("chunk CRC mismatch")
    return data


class Recording:
    """A coach recording opened by :func:`open_recording`.

    Attributes:
        path: the file.
        software_version: coach version that recorded it (None when the file lost it).
        start_wall_ns: host wall clock at session time 0, ns since the Unix epoch (or None).
        config_toml: the effective config as TOML text (or None).
        sensors: location -> sensor and firmware profile, in recording order.
        metadata: every key of the ``coach.session`` metadata record, as stored.

    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.software_version: str | None = None
        self.start_wall_ns: int | None = None
        self.config_toml: str | None = None
        self.sensors: dict[Location, RecordedSensor] = {}
        self.metadata: dict[str, str] = {}
        self._size = size
        self._complete = False
        self._known_channels: dict[int, _Channel] = {}  # raw channels named by the metadata
        self._damage: str | None = None

    @property
    def truncated(self) -> bool:
        """True when the file ends without a proper footer, mid-record, or with damage."""
        return not self._complete or self._damage is not None

    @property
    def start_time(self) -> datetime | None:
        """Session start (session time 0) as an aware UTC datetime."""
        if self.start_wall_ns is None:
            return None
        return datetime.fromtimestamp(self.start_wall_ns / 1e9, UTC)

    @property
    def profiles(self) -> dict[str, str]:
        """Profile name -> TOML text of every firmware profile the recording stores."""
        return {s.profile: s.profile_toml for s in self.sensors.values() if s.profile_toml}

    def iter_raw(self, locations: Container[str] | None = None) -> Iterator[RawPacket]:
        """Every recorded notification in file order (optionally of some locations only)."""
        for channel, _log_time, data in self._messages():
            location = channel.location
            if location is None or (locations is not None and location not in locations):
                continue
            yield RawPacket(location, _F64.unpack_from(data)[0], bytes(data[8:]))

    def iter_json(self, topics: Container[str] | None = None) -> Iterator[JsonMessage]:
        """The decoded values recorded on JSON channels, in file order."""
        start = self.start_wall_ns or 0
        for channel, log_time, data in self._messages():
            if channel.encoding != "json" or (topics is not None and channel.topic not in topics):
                continue
            try:
                obj = json.loads(bytes(data))
            except ValueError:
                self._note_damage(f"unreadable JSON message on {channel.topic}")
                continue
            yield JsonMessage(channel.topic, (log_time - start) / 1e9, obj)

    def summary(self) -> dict[Location, LocationSummary]:
        """Per location: packet count and earliest/latest host time.

        Cheap: reads the message indexes that follow each chunk instead of decompressing it
        (only a chunk whose indexes are missing, at a cut end, is decoded). Host times come
        from the MCAP log times, exact to ±1 ns.
        """
        counts: dict[int, list[int]] = {}  # channel id -> [packets, min log, max log]
        channels = dict(self._known_channels)

        def add(channel_id: int, log_times: list[int]) -> None:
            if not log_times:
                return
            entry = counts.setdefault(channel_id, [0, log_times[0], log_times[0]])
            entry[0] += len(log_times)
            entry[1] = min(entry[1], *log_times)
            entry[2] = max(entry[2], *log_times)

        def decode(chunk: tuple[int, int]) -> None:
            with open(self.path, "rb") as f:
                f.seek(chunk[0])
                body = f.read(chunk[1])
            try:
                for channel_id, log_time, _data in list(self._chunk_messages(body, channels)):
                    add(channel_id, [log_time])
            except _DamagedError as error:
                self._note_damage(str(error))

        # A chunk's message indexes are trusted once another record follows them (at a cut
        # they may be incomplete): until then they wait in `index`.
        pending: tuple[int, int] | None = None  # the last chunk: (body offset, length)
        index: list[tuple[int, list[int]]] = []
        with open(self.path, "rb") as f:
            for opcode, offset, length, body in self._records(f, skip={_CHUNK}):
                if opcode == _MESSAGE_INDEX and pending is not None and body is not None:
                    try:
                        channel_id, nbytes = struct.unpack_from("<HI", body, 0)
                        times = [t for t, _ in struct.iter_unpack("<QQ", body[6 : 6 + nbytes])]
                    except struct.error:
                        self._note_damage("unreadable message index")
                        continue
                    index.append((channel_id, times))
                    continue
                if pending is not None:
                    if index and all(channel_id in channels for channel_id, _ in index):
                        for channel_id, times in index:
                            add(channel_id, times)
                    else:  # no index, or it names channels defined inside the chunk
                        decode(pending)
                pending, index = None, []
                if opcode == _CHUNK:
                    pending = (offset, length)
                elif opcode == _CHANNEL and body is not None:
                    self._add_channel(body, channels)
                elif opcode == _MESSAGE and body is not None and len(body) >= _MESSAGE_HEAD.size:
                    add(_MESSAGE_HEAD.unpack_from(body)[0], [_MESSAGE_HEAD.unpack_from(body)[2]])
        if pending is not None:
            decode(pending)
        start = self.start_wall_ns or 0
        result = {loc: LocationSummary(loc, 0, None, None) for loc in self.sensors}
        for channel_id, (n, first, last) in counts.items():
            channel = channels.get(channel_id)
            if channel is None or channel.location is None:
                continue
            result[channel.location] = LocationSummary(
                channel.location, n, (first - start) / 1e9, (last - start) / 1e9
            )
        return result

    # -- reading ---------------------------------------------------------------------------

    def _note_damage(self, reason: str) -> None:
        if self._damage is None:
            log.warning(
                "recording %s is damaged (%s): skipping what cannot be read", self.path, reason
            )
        self._damage = reason

    def _records(
        self, f: BinaryIO, skip: Container[int] = ()
    ) -> Iterator[tuple[int, int, int, bytes | None]]:
        """Complete top-level records up to the data end: (opcode, body offset, length, body).

        Bodies of opcodes in ``skip`` are not read (None). Stops quietly at a cut; stops with a
        damage note at an impossible record.
        """
        f.seek(len(MAGIC))
        position = len(MAGIC)
        while True:
            head = f.read(_RECORD.size)
            if len(head) < _RECORD.size:
                return
            opcode, length = _RECORD.unpack(head)
            position += _RECORD.size
            if length > self._size - position:
                return  # cut mid-record
            if opcode == 0:
                self._note_damage(f"invalid record at byte {position - _RECORD.size}")
                return
            if opcode in skip:
                f.seek(length, os.SEEK_CUR)
                body = None
            else:
                body = f.read(length)
                if len(body) < length:
                    return
            yield opcode, position, length, body
            position += length
            if opcode in (_DATA_END, _FOOTER):
                return

    def _add_channel(self, body: bytes, channels: dict[int, _Channel]) -> None:
        channel: Channel = _parse(Channel.read, body)
        location = None
        if channel.message_encoding == RAW_ENCODING:
            try:
                location = Location(channel.metadata.get("location", ""))
            except ValueError:
                self._note_damage(f"raw channel {channel.topic} has no valid location")
        channels[channel.id] = _Channel(channel.topic, channel.message_encoding, location)

    def _chunk_messages(
        self, body: bytes, channels: dict[int, _Channel]
    ) -> Iterator[tuple[int, int, memoryview]]:
        """(channel id, log time, data) of the messages of one chunk; registers its channels."""
        data = memoryview(_chunk_records(body))
        n = len(data)
        position = 0
        while position < n:
            if n - position < _RECORD.size:
                raise _DamagedError("chunk ends mid-record")
            opcode, length = _RECORD.unpack_from(data, position)
            position += _RECORD.size
            end = position + length
            if end > n:
                raise _DamagedError("chunk ends mid-record")
            if opcode == _MESSAGE:
                if length < _MESSAGE_HEAD.size:
                    raise _DamagedError("short message")
                channel_id, _seq, log_time, _pub = _MESSAGE_HEAD.unpack_from(data, position)
                yield channel_id, log_time, data[position + _MESSAGE_HEAD.size : end]
            elif opcode == _CHANNEL:
                self._add_channel(bytes(data[position:end]), channels)
            position = end

    def _messages(self) -> Iterator[tuple[_Channel, int, memoryview]]:
        """Every message of the file in order, with its channel."""
        channels = dict(self._known_channels)
        with open(self.path, "rb") as f:
            for opcode, _offset, _length, body in self._records(f):
                assert body is not None
                try:
                    if opcode == _CHUNK:
                        # Parse the whole chunk first: a damaged chunk yields nothing.
                        messages = list(self._chunk_messages(body, channels))
                    elif opcode == _MESSAGE:
                        if len(body) < _MESSAGE_HEAD.size:
                            raise _DamagedError("short message")
                        channel_id, _seq, log_time, _pub = _MESSAGE_HEAD.unpack_from(body)
                        messages = [(channel_id, log_time, memoryview(body)[_MESSAGE_HEAD.size :])]
                    elif opcode == _CHANNEL:
                        self._add_channel(body, channels)
                        continue
                    else:
                        continue
                except _DamagedError as error:
                    self._note_damage(str(error))
                    continue
                for channel_id, log_time, data in messages:
                    channel = channels.get(channel_id)
                    if channel is None:
                        self._note_damage(f"message on unknown channel {channel_id}")
                        continue
                    if channel.location is not None and len(data) < _F64.size:
                        self._note_damage(f"short raw message on {channel.topic}")
                        continue
                    yield channel, log_time, data


def _tail_is_footer(f: BinaryIO, size: int) -> bool:
    """True when the file ends with a well-formed footer record and the closing magic."""
    if size < 2 * len(MAGIC) + _FOOTER_BYTES:
        return False
    f.seek(size - len(MAGIC) - _FOOTER_BYTES)
    tail = f.read(len(MAGIC) + _FOOTER_BYTES)
    opcode, length = _RECORD.unpack_from(tail)
    return tail.endswith(MAGIC) and opcode == _FOOTER and length == 20


def _not_coach(path: Path, header: Header | None) -> SessionFormatError:
    writer = f"written by {header.library!r}" if header and header.library else "unknown writer"
    return SessionFormatError(
        f"{path}: an MCAP file but not a coach recording ({writer}; no {SESSION_METADATA!r} "
        "metadata). coach replays the .mcap recordings that `coach run` writes; other data "
        "can be imported as a CSV session folder (one <location>.csv per sensor)"
    )


def _read_start(recording: Recording, f: BinaryIO) -> None:
    """Header, session metadata and attachments: the records before the first data."""
    header: Header | None = None
    session: dict[str, str] | None = None
    attachments: dict[str, bytes] = {}
    reached_data = False
    path = recording.path
    try:
        for opcode, _offset, _length, body in recording._records(f, skip={_CHUNK}):
            if header is None and opcode != _HEADER:
                raise SessionFormatError(
                    f"{path}: damaged MCAP file (no header record after the magic bytes)"
                )
            if opcode == _HEADER and body is not None:
                header = _parse(Header.read, body)
            elif opcode == _METADATA and body is not None:
                metadata: Metadata = _parse(Metadata.read, body)
                if metadata.name == SESSION_METADATA:
                    session = dict(metadata.metadata)
            elif opcode == _ATTACHMENT and body is not None:
                attachment: Attachment = _parse(Attachment.read, body)
                attachments[attachment.name] = attachment.data
            elif opcode in (_CHUNK, _MESSAGE, _DATA_END, _FOOTER):
                reached_data = True
                break
    except _DamagedError as error:
        recording._note_damage(str(error))
    coach_header = header is not None and (
        header.profile == MCAP_PROFILE or header.library.startswith("coach/")
    )
    if session is None:
        if header is not None and not coach_header:
            raise _not_coach(path, header)
        if reached_data or recording._complete:
            raise SessionFormatError(
                f"{path}: a coach MCAP file without its {SESSION_METADATA!r} metadata: the file "
                "is damaged and cannot be replayed"
            )
        return  # cut before the metadata: an empty truncated recording
    fmt = session.get("format", "")
    if fmt != FORMAT:
        newer = fmt.startswith("coach.recording/")
        raise SessionFormatError(
            f"{path}: recording format {fmt!r}, this coach reads {FORMAT!r}"
            + ("; upgrade coach to replay it" if newer else "")
        )
    recording.metadata = session
    recording.software_version = session.get("software_version")
    try:
        recording.start_wall_ns = int(session["start_wall_ns"])
        sensors = json.loads(session.get("sensors", "{}"))
        recording.sensors = {
            Location(loc): RecordedSensor(
                Location(loc),
                str(name),
                _text(attachments.get(f"{PROFILE_ATTACHMENT_PREFIX}{name}.toml")),
            )
            for loc, name in sensors.items()
        }
    except (KeyError, ValueError, AttributeError) as error:
        raise SessionFormatError(
            f"{path}: invalid {SESSION_METADATA!r} metadata ({error}); the file is damaged"
        ) from None
    recording.config_toml = _text(attachments.get(CONFIG_ATTACHMENT))
    try:
        raw_channels = json.loads(session.get("raw_channels", "{}"))
        recording._known_channels = {
            int(cid): _Channel(f"/raw/{loc}", RAW_ENCODING, Location(loc))
            for cid, loc in raw_channels.items()
        }
    except (ValueError, AttributeError):
        recording._note_damage("invalid raw_channels metadata")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def open_recording(path: Path | str) -> Recording:
    """Open a coach recording: read its metadata and check whether it is complete.

    A truncated recording (no footer, cut mid-record) opens normally with
    :attr:`Recording.truncated` set and a warning logged.

    Raises:
        SessionFormatError: the file is missing, not MCAP, or not a coach recording.

    """
    file = Path(path)
    try:
        f = open(file, "rb")  # noqa: SIM115
    except IsADirectoryError:
        raise SessionFormatError(
            f"{file} is a folder, not a recording; a CSV session folder is replayed with "
            "`coach replay <folder>`"
        ) from None
    except OSError as error:
        raise SessionFormatError(f"{file}: cannot read the recording: {error.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        recording = Recording(file, size)
        start = f.read(len(MAGIC))
        if start != MAGIC[: len(start)]:
            raise SessionFormatError(
                f"{file}: not an MCAP file (it starts with {start!r}); coach recordings are the "
                ".mcap files that `coach run` writes"
            )
        recording._complete = _tail_is_footer(f, size)
        if len(start) == len(MAGIC):
            _read_start(recording, f)
    if recording.truncated:
        log.warning(
            "recording %s ends without its MCAP footer (interrupted: crash, power loss or full "
            "disk); replaying it up to the last complete record",
            file,
        )
    return recording
