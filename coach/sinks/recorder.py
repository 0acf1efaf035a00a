"""Raw session recording: every BLE notification, before decoding, in an append-only MCAP file.

File layout (``coach.recording/1``; read back by :mod:`coach.sources.recording`):

* MCAP header: profile ``coach``, library ``coach/<version> mcap-python/<version>``.
* Metadata record ``coach.session``: ``format`` (``coach.recording/1``), ``software_version``
  (``coach.__version__``), ``start_wall_ns`` (host wall clock at session time 0, ns since the
  Unix epoch), ``start_wall_iso`` (the same, ISO 8601 UTC), ``flush_interval_s``, ``sensors``
  (JSON object: location -> firmware profile name), ``raw_channels`` (JSON object: MCAP
  channel id -> location, a fallback should the chunk holding the channel records be damaged)
  plus any extra keys the caller gives.
* Attachments: ``config.toml`` (the effective config) and ``profiles/<name>.toml`` (each
  firmware profile used, as its TOML text); media type ``application/toml``.
* One channel per sensor location: topic ``/raw/<location>``, message encoding
  ``coach.raw.v1``, no schema, channel metadata ``location`` and ``profile``. A
  ``coach.raw.v1`` message is the host receive time in session seconds as a little-endian
  float64 (8 bytes) followed by the notification payload exactly as received. The message's
  ``sequence`` counts the channel's messages from 0.
* Decoded channels (optional, for Foxglove): message encoding ``json``, schema encoding
  ``jsonschema``, e.g. ``/samples/<location>``, ``/events``, ``/strides``, ``/cues``,
  ``/quality``.
* Every message's MCAP ``log_time`` (and ``publish_time``) is the host wall clock of its
  session time: ``start_wall_ns + round(t × 1e9)``, i.e. wall time on the monotonic session
  clock, immune to NTP steps during the run.

Durability: messages are grouped in zstd-compressed chunks; a chunk is closed, handed to the OS
(and ``fsync``-ed unless disabled) at least every ``flush_interval_s`` of host (monotonic)
time, checked on every write and by :meth:`Recorder.flush_if_due`. A process killed with
SIGKILL therefore loses at most the last ``flush_interval_s`` (plus the write in progress);
every chunk before it is complete and carries a CRC, and the reader replays them without the
footer. Not thread-safe: use one recorder from one thread (or task).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import struct
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from mcap.writer import LIBRARY_IDENTIFIER, CompressionType, Writer

from coach import __version__
from coach.errors import RecordingError
from coach.types import (
    LOCATIONS,
    STRIDE_METRICS,
    Cue,
    GaitEvent,
    QualityChange,
    SampleBlock,
    Stride,
)

log = logging.getLogger(__name__)

#: Value of ``format`` in the ``coach.session`` metadata record.
FORMAT = "coach.recording/1"
#: Name of the metadata record that identifies a coach recording.
SESSION_METADATA = "coach.session"
#: MCAP header profile of coach recordings.
MCAP_PROFILE = "coach"
#: Message encoding of the raw channels: float64 LE host time (s) + payload bytes.
RAW_ENCODING = "coach.raw.v1"
#: Topic prefix of the raw channels (``/raw/<location>``).
RAW_TOPIC_PREFIX = "/raw/"
#: Attachment names of the effective config and of each profile (``profiles/<name>.toml``).
CONFIG_ATTACHMENT = "config.toml"
PROFILE_ATTACHMENT_PREFIX = "profiles/"
TOML_MEDIA_TYPE = "application/toml"

_F64 = struct.Struct("<d")

#: Chunk size bound, bytes; chunks are normally closed earlier, at every flush.
CHUNK_SIZE = 1 << 20

_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_STRING = {"type": "string"}


def _object_schema(title: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": dict(properties)}


#: JSON schemas of the decoded topics that :meth:`Recorder.write_value` writes.
JSON_SCHEMAS: dict[str, dict[str, Any]] = {
    "/samples": _object_schema(
        "coach.Sample",
        {"t": _NUMBER}
        | {k: _NUMBER for k in ("ax", "ay", "az")}
        | {k: _NULLABLE_NUMBER for k in ("gx", "gy", "gz")},
    ),
    "/events": _object_schema(
        "coach.GaitEvent",
        {"t": _NUMBER, "t_detected": _NUMBER, "kind": _STRING, "side": _STRING},
    ),
    "/strides": _object_schema(
        "coach.Stride",
        {"t": _NUMBER, "t_detected": _NUMBER, "side": _STRING}
        | {name: _NULLABLE_NUMBER for name in STRIDE_METRICS}
        | {"quality": {"type": "array", "items": _STRING}},
    ),
    "/cues": _object_schema(
        "coach.Cue",
        {
            "t": _NUMBER,
            "rule": _STRING,
            "phrase": _STRING,
            "side": _STRING,
            "play_at": _NULLABLE_NUMBER,
        },
    ),
    "/quality": _object_schema(
        "coach.QualityChange",
        {"t": _NUMBER, "location": _STRING, "flag": _STRING, "active": {"type": "boolean"}},
    ),
}
_GENERIC_SCHEMA: dict[str, Any] = {"type": "object"}


@dataclasses.dataclass(frozen=True, slots=True)
class ProfileText:
    """The firmware profile one sensor location ran with.

    Attributes:
        name: profile name (e.g. ``witmotion-wt901ble``).
        toml: the profile's TOML text as used.

    """

    name: str
    toml: str


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_bytes(obj: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)
    return text.encode()


def _schema_for(topic: str) -> dict[str, Any]:
    if topic.startswith("/samples/"):
        return JSON_SCHEMAS["/samples"]
    return JSON_SCHEMAS.get(topic, _GENERIC_SCHEMA)


class Recorder:
    """Writes one session's raw notifications (and optionally decoded values) to MCAP.

    Args:
        path: the ``.mcap`` file to create (its folder must exist).
        config_toml: the effective config as TOML text.
        profiles: sensor location (``pelvis``, ``left_shank``, ...) -> its firmware profile.
            One raw channel is created per location; :meth:`write_raw` accepts only these.
        flush_interval_s: longest host time between two flushes to the OS, s (≤ 1).
        fsync: also ``os.fsync`` at every flush (survives power loss, not only a crash).
        start_wall_ns: host wall clock at session time 0, ns since the Unix epoch
            (default: now).
        extra_metadata: more ``coach.session`` metadata keys (e.g. athlete, device addresses).
        overwrite: replace an existing file (default: refuse, never clobber a recording).
        clock: monotonic clock in s that paces the flushes (tests inject one).

    Attributes:
        packets: raw notifications recorded.
        dropped: messages not recorded (written after :meth:`close` or after a write error).
        error: the write error that stopped the recording, if any (logged once; later writes
            are dropped so that a full disk never stops the run).

    Raises:
        RecordingError: the file cannot be created.
        ValueError: an unknown location or a bad flush interval.

    """

    def __init__(
        self,
        path: Path | str,
        config_toml: str,
        profiles: Mapping[str, ProfileText],
        flush_interval_s: float = 0.5,
        *,
        fsync: bool = True,
        start_wall_ns: int | None = None,
        extra_metadata: Mapping[str, str] | None = None,
        overwrite: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < flush_interval_s <= 1.0:
            raise ValueError(f"flush_interval_s must be in (0, 1] s, got {flush_interval_s}")
        unknown = sorted(set(profiles) - set(LOCATIONS))
        if unknown:
            raise ValueError(f"unknown sensor locations {unknown} (allowed: {list(LOCATIONS)})")
        texts: dict[str, str] = {}  # profile name -> TOML text
        for profile in profiles.values():
            if texts.setdefault(profile.name, profile.toml) != profile.toml:
                raise ValueError(f"profile {profile.name!r} is given with two different texts")
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.start_wall_ns = time.time_ns() if start_wall_ns is None else int(start_wall_ns)
        self.packets = 0
        self.dropped = 0
        self.error: OSError | None = None
        self._fsync = fsync
        self._clock = clock
        self._closed = False
        self._last_flush = clock()
        self._raw_channels: dict[str, int] = {}
        self._json_channels: dict[str, int] = {}
        self._sequence: dict[int, int] = {}
        try:
            self._file: BinaryIO = open(self.path, "wb" if overwrite else "xb")  # noqa: SIM115
        except FileExistsError:
            raise RecordingError(
                f"{self.path}: a recording with this name already exists; choose another "
                "name or move the old one away"
            ) from None
        except OSError as error:
            raise RecordingError(
                f"{self.path}: cannot create the recording: {error.strerror}; check that the "
                "folder exists and is writable (config: recording.directory)"
            ) from None
        try:
            # mcap's Writer is untyped: held as Any.
            self._writer: Any = cast(
                Any, Writer(self._file, chunk_size=CHUNK_SIZE, compression=CompressionType.ZSTD)
            )
            self._start(config_toml, profiles, texts, extra_metadata or {})
            self._writer.flush()
            if fsync:
                os.fsync(self._file.fileno())
        except OSError as error:
            self._file.close()
            raise RecordingError(f"{self.path}: cannot write the recording: {error}") from None

    def _start(
        self,
        config_toml: str,
        profiles: Mapping[str, ProfileText],
        texts: Mapping[str, str],
        extra: Mapping[str, str],
    ) -> None:
        self._writer.start(
            profile=MCAP_PROFILE, library=f"coach/{__version__} {LIBRARY_IDENTIFIER}"
        )
        # Channel records go into the first chunk; their ids are also kept in the metadata
        # (raw_channels) so that the raw packets stay readable if that chunk is damaged.
        for location, profile in profiles.items():
            self._raw_channels[str(location)] = self._register(
                RAW_TOPIC_PREFIX + str(location),
                RAW_ENCODING,
                0,
                {"location": str(location), "profile": profile.name},
            )
        start_iso = datetime.fromtimestamp(self.start_wall_ns / 1e9, UTC).isoformat()
        sensors = {str(loc): p.name for loc, p in profiles.items()}
        self._writer.add_metadata(
            SESSION_METADATA,
            dict(extra)
            | {
                "format": FORMAT,
                "software_version": __version__,
                "start_wall_ns": str(self.start_wall_ns),
                "start_wall_iso": start_iso,
                "flush_interval_s": repr(self.flush_interval_s),
                "sensors": json.dumps(sensors),
                "raw_channels": json.dumps(
                    {str(cid): loc for loc, cid in self._raw_channels.items()}
                ),
            },
        )
        now = time.time_ns()
        self._writer.add_attachment(
            now, self.start_wall_ns, CONFIG_ATTACHMENT, TOML_MEDIA_TYPE, config_toml.encode()
        )
        for name, text in texts.items():
            self._writer.add_attachment(
                now,
                self.start_wall_ns,
                f"{PROFILE_ATTACHMENT_PREFIX}{name}.toml",
                TOML_MEDIA_TYPE,
                text.encode(),
            )

    def _register(self, topic: str, encoding: str, schema_id: int, meta: dict[str, str]) -> int:
        channel_id = int(self._writer.register_channel(topic, encoding, schema_id, meta))
        self._sequence[channel_id] = 0
        return channel_id

    def _log_time(self, t: float) -> int:
        return max(0, self.start_wall_ns + round(float(t) * 1e9))

    def _add(self, channel_id: int, t: float, data: bytes) -> bool:
        if self._closed or self.error is not None:
            self.dropped += 1
            return False
        ns = self._log_time(t)
        sequence = self._sequence[channel_id]
        self._sequence[channel_id] = sequence + 1
        try:
            self._writer.add_message(channel_id, ns, data, ns, sequence)
        except OSError as error:
            self._fail(error)
            return False
        self.flush_if_due()
        return True

    def write_raw(self, location: str, host_time_s: float, payload: bytes) -> None:
        """Record one notification exactly as received.

        Args:
            location: sensor location (one of the ``profiles`` keys).
            host_time_s: host receive time, session s.
            payload: the notification bytes.

        Raises:
            ValueError: ``location`` was not declared at construction.

        """
        channel_id = self._raw_channels.get(str(location))
        if channel_id is None:
            raise ValueError(
                f"no raw channel for location {location!r} (declared: {sorted(self._raw_channels)})"
            )
        if self._add(channel_id, host_time_s, _F64.pack(host_time_s) + payload):
            self.packets += 1

    def write_json(
        self,
        topic: str,
        t: float,
        obj: Mapping[str, Any],
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a decoded value as JSON on ``topic`` at session time ``t`` (s).

        ``schema`` (a JSON schema) is used when the topic is first written; by default the
        schema of a known topic (:data:`JSON_SCHEMAS`) or a generic object. Non-finite floats
        are written as null.
        """
        channel_id = self._json_channels.get(topic)
        if self._closed or self.error is not None:
            self.dropped += 1
            return
        if channel_id is None:
            if not topic.startswith("/") or topic.startswith(RAW_TOPIC_PREFIX):
                raise ValueError(f"topic {topic!r} must start with '/' and not with '/raw/'")
            body = dict(schema) if schema is not None else _schema_for(topic)
            name = str(body.get("title", topic.strip("/").replace("/", ".")))
            try:
                schema_id = self._writer.register_schema(name, "jsonschema", _json_bytes(body))
            except OSError as error:
                self._fail(error)
                return
            channel_id = self._register(topic, "json", schema_id, {})
            self._json_channels[topic] = channel_id
        self._add(channel_id, t, _json_bytes(obj))

    def write_value(self, value: GaitEvent | Stride | Cue | QualityChange | SampleBlock) -> None:
        """Record a core output on its decoded topic (a sample block: one message per sample).

        Topics: ``/events``, ``/strides``, ``/cues``, ``/quality``, ``/samples/<location>``
        (fields ``t, ax, ay, az, gx, gy, gz`` as in a CSV session folder).
        """
        if isinstance(value, SampleBlock):
            topic = f"/samples/{value.location.value}"
            gyr = value.gyr
            for i, t in enumerate(value.t.tolist()):
                ax, ay, az = value.acc[i].tolist()
                row: dict[str, Any] = {"t": t, "ax": ax, "ay": ay, "az": az}
                if gyr is not None:
                    row["gx"], row["gy"], row["gz"] = gyr[i].tolist()
                self.write_json(topic, t, row)
        elif isinstance(value, GaitEvent):
            self.write_json(
                "/events",
                value.t,
                {
                    "t": value.t,
                    "t_detected": value.t_detected,
                    "kind": value.kind.value,
                    "side": value.side.value,
                },
            )
        elif isinstance(value, Stride):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            fields["side"] = value.side.value
            fields["quality"] = sorted(value.quality)
            self.write_json("/strides", value.t, fields)
        elif isinstance(value, Cue):
            self.write_json(
                "/cues",
                value.t,
                {
                    "t": value.t,
                    "rule": value.rule,
                    "phrase": value.phrase,
                    "side": value.side.value,
                    "play_at": value.play_at,
                },
            )
        else:
            self.write_json(
                "/quality",
                value.t,
                {
                    "t": value.t,
                    "location": value.location.value,
                    "flag": value.flag.value,
                    "active": value.active,
                },
            )

    def flush_if_due(self) -> bool:
        """Flush when ``flush_interval_s`` has passed since the last flush; True if it did.

        Writes call this; a runtime should also call it from a periodic timer so that data is
        flushed even when no packet arrives.
        """
        if self._clock() - self._last_flush >= self.flush_interval_s:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Close the open chunk and hand everything written so far to the OS (and the disk)."""
        self._last_flush = self._clock()
        if self._closed or self.error is not None:
            return
        try:
            self._writer.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        self.error = error
        self.dropped += 1
        log.error(
            "recording %s stopped: %s; the run goes on unrecorded (data so far is kept)",
            self.path,
            error,
        )

    def close(self) -> None:
        """Finish the file (summary and footer) and close it; further writes are dropped."""
        if self._closed:
            return
        try:
            if self.error is None:
                self._writer.finish()
                self._file.flush()
                if self._fsync:
                    os.fsync(self._file.fileno())
        except OSError as error:
            self._fail(error)
        finally:
            self._closed = True
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
