"""Topics and JSON payloads of the MQTT telemetry, schema ``coach.v1`` (``docs/mqtt.md``).

Every payload is a flat JSON object that starts with the same envelope:

- ``schema``: ``"coach.v1"``; a consumer rejects what it does not know. Adding fields keeps
  the version; renaming, removing or changing the meaning of one bumps it.
- ``type``: ``event``, ``stride``, ``cue``, ``quality``, ``status``, ``config`` or
  ``config_error``.
- ``athlete``: the athlete name of the config.
- ``seq``: per-topic message number from 0 (a gap means messages were dropped).
- ``wall_time``: host Unix time when coach produced the message, s.

then the fields of the value, with times in session seconds and units in the names. Metrics the
sensors cannot measure are ``null``, never guessed; non-finite numbers are sent as ``null``.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coach.types import STRIDE_METRICS, Cue, GaitEvent, QualityChange, Stride

#: The schema version written in every payload.
SCHEMA = "coach.v1"

#: Telemetry topics (the queue kinds) and the ``type`` of their payloads.
TELEMETRY_TYPES: dict[str, str] = {
    "events": "event",
    "strides": "stride",
    "cues": "cue",
    "quality": "quality",
}


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one athlete: ``<prefix>/<athlete>/<name>``."""

    base: str

    @classmethod
    def of(cls, prefix: str, athlete: str) -> Topics:
        """Topics under ``prefix`` for ``athlete`` (both already validated by the config)."""
        if any(c in athlete for c in "/+#") or not athlete:
            raise ValueError(f"athlete name {athlete!r} cannot be part of an MQTT topic")
        return cls(f"{prefix.strip('/')}/{athlete}")

    def telemetry(self, kind: str) -> str:
        """Topic of a telemetry kind (``events``, ``strides``, ``cues``, ``quality``)."""
        if kind not in TELEMETRY_TYPES:
            raise ValueError(
                f"unknown telemetry kind {kind!r} (allowed: {', '.join(TELEMETRY_TYPES)})"
            )
        return f"{self.base}/{kind}"

    @property
    def status(self) -> str:
        """Retained status (online, sensors, counts); the last will marks it offline."""
        return f"{self.base}/status"

    @property
    def config_set(self) -> str:
        """Where a coach publishes partial config updates."""
        return f"{self.base}/config/set"

    @property
    def config_current(self) -> str:
        """Retained effective (remotely tunable) config."""
        return f"{self.base}/config/current"

    @property
    def config_error(self) -> str:
        """Why an update was rejected."""
        return f"{self.base}/config/error"


def envelope(kind_type: str, athlete: str, seq: int, wall_time: float) -> dict[str, Any]:
    """The fields every payload starts with."""
    return {
        "schema": SCHEMA,
        "type": kind_type,
        "athlete": athlete,
        "seq": seq,
        "wall_time": round(wall_time, 6),
    }


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def event_fields(event: GaitEvent) -> dict[str, Any]:
    """Fields of a ``event`` payload (as in the events CSV)."""
    return {
        "t": _number(event.t),
        "t_detected": _number(event.t_detected),
        "kind": event.kind.value,
        "side": event.side.value,
    }


def stride_fields(stride: Stride) -> dict[str, Any]:
    """Fields of a ``stride`` payload: every metric of :data:`STRIDE_METRICS` (``null``: none)."""
    fields: dict[str, Any] = {
        "t": _number(stride.t),
        "t_detected": _number(stride.t_detected),
        "side": stride.side.value,
    }
    for name in STRIDE_METRICS:
        fields[name] = _number(getattr(stride, name))
    fields["quality"] = sorted(stride.quality)
    return fields


def cue_fields(cue: Cue) -> dict[str, Any]:
    """Fields of a ``cue`` payload."""
    return {
        "t": _number(cue.t),
        "rule": cue.rule,
        "phrase": cue.phrase,
        "side": cue.side.value,
        "play_at": _number(cue.play_at),
    }


def quality_fields(change: QualityChange) -> dict[str, Any]:
    """Fields of a ``quality`` payload (a flag raised or cleared)."""
    return {
        "t": _number(change.t),
        "location": change.location.value,
        "flag": change.flag.value,
        "active": change.active,
    }


def fields_of(value: object) -> dict[str, Any]:
    """Fields of any telemetry value (a core output or an already built mapping)."""
    if isinstance(value, GaitEvent):
        return event_fields(value)
    if isinstance(value, Stride):
        return stride_fields(value)
    if isinstance(value, Cue):
        return cue_fields(value)
    if isinstance(value, QualityChange):
        return quality_fields(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot publish a {type(value).__name__}")


def status_fields(
    online: bool,
    counts: Mapping[str, int],
    mqtt: Mapping[str, int],
    extra: Mapping[str, Any],
    reason: str | None = None,
) -> dict[str, Any]:
    """Fields of a ``status`` payload.

    Args:
        online: whether the coach is running and connected.
        counts: messages produced per telemetry topic (including dropped ones).
        mqtt: publisher counters (``sent``, ``dropped``, ``reconnects``, ``queued``).
        extra: what the runtime reported with ``publish_status`` (e.g. ``sensors``).
        reason: why the coach is offline (``stopped``, ``connection lost``).

    """
    fields: dict[str, Any] = dict(extra)
    fields.update({"online": online, "counts": dict(counts), "mqtt": dict(mqtt)})
    if reason is not None:
        fields["reason"] = reason
    return fields


def _default(value: Any) -> Any:
    """JSON fallback for values a runtime may put in a status: enums, sets, else ``str``."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; non-finite floats become ``null``."""
    try:
        return json.dumps(
            payload, separators=(",", ":"), allow_nan=False, default=_default
        ).encode()
    except ValueError:
        return json.dumps(_finite(payload), separators=(",", ":"), default=_default).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
