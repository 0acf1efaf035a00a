"""Firmware profiles: what a sensor's firmware speaks, as data (``firmware_profiles/*.toml``).

A profile names the device (advertised name pattern, service UUIDs), the GATT characteristics,
the byte sequences that configure, start and stop streaming, the packet layout (offsets,
little-endian numpy dtypes, samples per notification, header/sync bytes, counter or timestamp)
and the scale factors to SI (``design.md`` section 4). Decoding and encoding live in
:mod:`coach.wire`; this module only validates and loads.

Packet layout vocabulary (all offsets in bytes):

* ``framing = "notification"``: one notification carries one packet; ``framing = "byte_stream"``:
  notifications are slices of a byte stream of fixed-length frames that start with ``header``
  (frames may arrive split across notifications or joined; the decoder resyncs on the header).
* ``header``: bytes expected at offset 0 of every packet/frame (sync word or format version).
* ``samples_offset``: where the first sample starts; ``sample_bytes``: bytes per sample.
* ``sample_layout = "interleaved"``: sample *i* starts at ``samples_offset + i*sample_bytes`` and
  a field sits at ``field.offset`` inside it. ``"planar"``: every field is a block of *n*
  consecutive xyz triplets starting at ``samples_offset + n*field.offset`` (``field.offset`` is
  then the sum of the widths of the blocks before it, per sample).
* ``count_from``: ``"fixed"`` (``samples_per_packet``), ``"field"`` (a u8/u16 at
  ``count_offset``) or ``"length"`` (derived from the packet length).
* ``reassembly``: two-part packets (Movesense GSP: reply type 2 = data, type 3 = second part whose
  bytes after its 2-byte header are appended).

Scale factors: ``raw * scale`` is in ``unit`` (``g``, ``m/s2``, ``deg/s``, ``rad/s``); SI is
``raw * si_scale`` with 1 g = 9.80665 m/s² (standard gravity, CGPM 1901) and 1° = π/180 rad.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coach.errors import ProfileError

#: Folder of the bundled profiles.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"

#: Standard gravity, m/s² per g (3rd CGPM, 1901).
STANDARD_GRAVITY = 9.80665

_UNIT_TO_SI: dict[str, float] = {
    "g": STANDARD_GRAVITY,
    "m/s2": 1.0,
    "deg/s": math.pi / 180.0,
    "rad/s": 1.0,
}
_UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_HEX_RE = re.compile(r"^([0-9a-fA-F]{2}|\{rate\})( ?([0-9a-fA-F]{2}|\{rate\}))*$")

IntDtype = Literal["u1", "i1", "<u2", "<i2", "<u4", "<i4"]
ValueDtype = Literal["<i2", "<i4", "<f4", "<f8"]


def hex_bytes(text: str) -> bytes:
    """Bytes of a hex string such as ``"ff aa 03"`` (spaces optional)."""
    return bytes.fromhex(text.replace(" ", ""))


class _Model(BaseModel):
    """Base of every profile section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VectorField(_Model):
    """One xyz triplet of a sample (acc or gyr): three values of ``dtype``, x then y then z."""

    offset: int = Field(ge=0)
    dtype: ValueDtype
    scale: float = Field(gt=0.0, description="raw value × scale is in `unit`")
    unit: Literal["g", "m/s2", "deg/s", "rad/s"]
    full_scale: float = Field(gt=0.0, description="measuring range ± in `unit` (saturation)")

    @property
    def si_scale(self) -> float:
        """Factor from the raw value to SI (m/s² or rad/s)."""
        return self.scale * _UNIT_TO_SI[self.unit]

    @property
    def full_scale_si(self) -> float:
        """Measuring range ± in SI units."""
        return self.full_scale * _UNIT_TO_SI[self.unit]

    @property
    def nbytes(self) -> int:
        """Bytes of the triplet."""
        return 3 * np.dtype(self.dtype).itemsize


class CounterSpec(_Model):
    """A sample counter in the packet: the index of the first sample, modulo ``2**bits``."""

    offset: int = Field(ge=0)
    dtype: IntDtype
    bits: int = Field(ge=4, le=32)


class TimestampSpec(_Model):
    """A sensor timestamp in the packet (unsigned, wraps at ``2**bits`` ticks)."""

    offset: int = Field(ge=0)
    dtype: IntDtype
    tick_s: float = Field(gt=0.0, description="seconds per tick (1e-3 for ms, 1e-6 for µs)")
    bits: int = Field(ge=8, le=32)
    refers_to: Literal["first", "last"] = "first"


class Reassembly(_Model):
    """Two-part packets: a first part of type ``first_type``, a second of ``continuation_type``."""

    type_offset: int = Field(0, ge=0)
    first_type: int = Field(ge=0, le=255)
    continuation_type: int = Field(ge=0, le=255)
    ref_offset: int | None = Field(None, ge=0)
    ref: int | None = Field(None, ge=0, le=255)
    header_bytes: int = Field(
        ge=0, description="bytes dropped from a continuation before appending"
    )
    max_part_bytes: int = Field(ge=8, le=512, description="longest notification the device sends")


class PacketLayout(_Model):
    """Where everything sits in a packet (see the module docstring for the vocabulary)."""

    framing: Literal["notification", "byte_stream"] = "notification"
    header: str = ""
    frame_bytes: int | None = Field(None, ge=2, le=512)
    samples_offset: int = Field(ge=0)
    sample_bytes: int = Field(ge=6)
    sample_layout: Literal["interleaved", "planar"] = "interleaved"
    count_from: Literal["fixed", "field", "length"] = "fixed"
    samples_per_packet: int = Field(ge=1, le=255)
    count_offset: int | None = Field(None, ge=0)
    count_dtype: Literal["u1", "<u2"] = "u1"
    max_samples_per_packet: int = Field(32, ge=1, le=255)
    pad_to: int | None = Field(None, ge=1, le=512)
    acc: VectorField
    gyr: VectorField | None = None
    counter: CounterSpec | None = None
    timestamp: TimestampSpec | None = None
    reassembly: Reassembly | None = None

    @field_validator("header")
    @classmethod
    def _hex(cls, value: str) -> str:
        if value and not re.fullmatch(r"([0-9a-fA-F]{2} ?)+", value.strip()):
            raise ValueError("must be hex bytes such as '55 61'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PacketLayout:
        if self.framing == "byte_stream":
            if self.frame_bytes is None or not self.header:
                raise ValueError("byte_stream framing needs frame_bytes and header")
            if self.count_from != "fixed" or self.samples_per_packet != 1:
                raise ValueError("byte_stream frames carry exactly one sample")
            if self.samples_offset + self.sample_bytes > self.frame_bytes:
                raise ValueError("samples_offset + sample_bytes exceeds frame_bytes")
        if self.count_from == "field" and self.count_offset is None:
            raise ValueError("count_from = 'field' needs count_offset")
        if self.counter is not None and self.timestamp is not None:
            raise ValueError("give a counter or a timestamp, not both")
        fields = [self.acc] + ([self.gyr] if self.gyr is not None else [])
        for f in fields:
            if f.offset + f.nbytes > self.sample_bytes:
                raise ValueError(f"field at offset {f.offset} does not fit in sample_bytes")
        if self.reassembly is not None and self.count_from != "fixed":
            raise ValueError("reassembly needs count_from = 'fixed' (the full length is known)")
        return self

    @property
    def header_bytes(self) -> bytes:
        """The header/sync bytes."""
        return hex_bytes(self.header)

    def packet_bytes(self, n: int) -> int:
        """Length of a packet carrying ``n`` samples, before padding."""
        return self.samples_offset + n * self.sample_bytes


class GattSpec(_Model):
    """GATT service and characteristics (lower-case 128-bit UUIDs)."""

    service: str = Field(pattern=_UUID_RE)
    notify: str = Field(pattern=_UUID_RE)
    write: str | None = Field(None, pattern=_UUID_RE)
    config: str | None = Field(None, pattern=_UUID_RE)


class GattStep(_Model):
    """One GATT operation: write bytes to, or (un)subscribe notifications of, a characteristic."""

    op: Literal["write", "write_no_response", "notify", "stop_notify"]
    char: Literal["notify", "write", "config"]
    hex: str = ""

    @field_validator("hex")
    @classmethod
    def _hex(cls, value: str) -> str:
        if value and not _HEX_RE.fullmatch(value.strip()):
            raise ValueError("must be hex bytes such as 'ff aa 03 {rate} 00'")
        return value


class Commands(_Model):
    """Byte sequences that configure, start and stop streaming; ``{rate}`` -> ``rate_code``."""

    rate_code: dict[str, str] = Field(default_factory=dict)
    configure: list[GattStep] = Field(default_factory=list)
    start: list[GattStep] = Field(default_factory=list)
    stop: list[GattStep] = Field(default_factory=list)


class Rates(_Model):
    """Sample rates the firmware supports, Hz."""

    supported_hz: list[float] = Field(min_length=1)
    default_hz: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _default_supported(self) -> Rates:
        if self.default_hz not in self.supported_hz:
            raise ValueError("default_hz must be one of supported_hz")
        if any(r <= 0 for r in self.supported_hz):
            raise ValueError("rates must be positive")
        return self


class ResolvedStep(_Model):
    """A GATT step with the characteristic UUID and the bytes resolved for one rate."""

    op: Literal["write", "write_no_response", "notify", "stop_notify"]
    uuid: str
    data: bytes


class FirmwareProfile(_Model):
    """One firmware profile (a ``firmware_profiles/<name>.toml`` file)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    device: str
    device_name_pattern: str
    advertised_service: str | None = Field(None, pattern=_UUID_RE)
    measures: list[Literal["acc", "gyr"]] = Field(min_length=1)
    mount_rotation: list[list[float]] = Field(
        default_factory=lambda: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    )
    verified_on_hardware: bool = False
    sources: list[str] = Field(default_factory=list)
    notes: str = ""
    gatt: GattSpec
    rates: Rates
    commands: Commands = Field(default_factory=Commands)
    packet: PacketLayout

    @field_validator("device_name_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @field_validator("mount_rotation")
    @classmethod
    def _rotation(cls, value: list[list[float]]) -> list[list[float]]:
        m = np.asarray(value, dtype=float)
        if m.shape != (3, 3):
            raise ValueError("must be a 3x3 matrix (list of three rows)")
        if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
            raise ValueError("must be a proper rotation (orthonormal, determinant +1)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FirmwareProfile:
        has_gyr = self.packet.gyr is not None
        if ("gyr" in self.measures) != has_gyr:
            raise ValueError("measures must list 'gyr' exactly when packet.gyr is given")
        if "acc" not in self.measures:
            raise ValueError("measures must include 'acc'")
        steps = self.commands.configure + self.commands.start + self.commands.stop
        uses_rate = any("{rate}" in s.hex for s in steps)
        for rate in self.rates.supported_hz:
            if uses_rate and _rate_key(rate) not in self.commands.rate_code:
                raise ValueError(f"commands.rate_code has no entry for {_rate_key(rate)} Hz")
        for step in steps:
            if step.char != "notify" and getattr(self.gatt, step.char) is None:
                raise ValueError(f"a command uses gatt.{step.char}, which is not given")
        return self

    @property
    def has_gyro(self) -> bool:
        """True when packets carry angular rate."""
        return self.packet.gyr is not None

    @property
    def mount(self) -> NDArray[np.float64]:
        """Nominal rotation sensor -> body frame, 3x3."""
        return np.asarray(self.mount_rotation, dtype=np.float64)

    @property
    def time_source(self) -> str:
        """``timestamp``, ``counter`` or ``none`` (sample times from arrival and nominal rate)."""
        if self.packet.timestamp is not None:
            return "timestamp"
        return "counter" if self.packet.counter is not None else "none"

    def check_rate(self, rate_hz: float | None) -> float:
        """The rate to use (the default when None); raises ProfileError when unsupported."""
        if rate_hz is None:
            return self.rates.default_hz
        if not any(math.isclose(rate_hz, r) for r in self.rates.supported_hz):
            allowed = ", ".join(_rate_key(r) for r in self.rates.supported_hz)
            raise ProfileError(
                f"profile {self.name}: {rate_hz:g} Hz unsupported (allowed: {allowed})"
            )
        return float(rate_hz)

    def steps(
        self, which: Literal["configure", "start", "stop"], rate_hz: float | None = None
    ) -> list[ResolvedStep]:
        """GATT operations of one command sequence with UUIDs and bytes resolved for a rate."""
        rate = self.check_rate(rate_hz)
        code = self.commands.rate_code.get(_rate_key(rate), "")
        out = []
        for step in getattr(self.commands, which):
            uuid = getattr(self.gatt, step.char)
            out.append(
                ResolvedStep(
                    op=step.op, uuid=uuid, data=hex_bytes(step.hex.replace("{rate}", code))
                )
            )
        return out

    def matches_name(self, advertised_name: str | None) -> bool:
        """True when an advertised device name fits ``device_name_pattern``."""
        return (
            advertised_name is not None
            and re.search(self.device_name_pattern, advertised_name) is not None
        )


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def available_profiles() -> dict[str, Path]:
    """Bundled profiles: name (file stem) -> path."""
    if not PROFILES_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(PROFILES_DIR.glob("*.toml"))}


def _format_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(file)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        parts.append(f"{path}: {message}")
    return "; ".join(parts)


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> FirmwareProfile:
    """Validate a profile given as a mapping; errors name ``source`` and the field path."""
    try:
        return FirmwareProfile.model_validate(data)
    except ValidationError as error:
        raise ProfileError(f"{source}: {_format_errors(error)}") from None


def load_profile(name_or_path: str | Path) -> FirmwareProfile:
    """Load a bundled profile by name (``coach-sim``) or any profile TOML file by path.

    Raises:
        ProfileError: unknown name, unreadable file, bad TOML or invalid content (the message
            names the file and the field path).

    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text
    if is_path:
        file = Path(name_or_path)
    else:
        known = available_profiles()
        if text not in known:
            raise ProfileError(
                f"unknown firmware profile {text!r} (available: {', '.join(known) or 'none'}; "
                "or give the path of a .toml file)"
            )
        file = known[text]
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"{file}: cannot read the profile: {error.strerror}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{file}: not valid TOML: {error}") from None
    profile = parse_profile(data, str(file))
    if profile.name != file.stem:
        raise ProfileError(f"{file}: name: {profile.name!r} must equal the file stem {file.stem!r}")
    return profile


def describe_profiles() -> list[dict[str, str]]:
    """One row per bundled profile for ``coach profiles``: name, device, rates, measures, timestamp.

    A profile that fails to load is listed with its error in ``device``.
    """
    rows = []
    for name, path in available_profiles().items():
        try:
            p = load_profile(path)
        except ProfileError as error:
            rows.append(
                {
                    "name": name,
                    "device": f"INVALID: {error}",
                    "rates": "",
                    "measures": "",
                    "timestamp": "",
                }
            )
            continue
        rates = ", ".join(_rate_key(r) for r in p.rates.supported_hz)
        ts = p.packet.timestamp
        if ts is not None:
            time_text = f"sensor timestamp u{ts.bits} × {ts.tick_s:g} s"
        elif p.packet.counter is not None:
            time_text = f"sample counter u{p.packet.counter.bits}, times from arrival"
        else:
            time_text = "none, times from arrival and nominal rate"
        rows.append(
            {
                "name": name,
                "device": p.device,
                "rates": f"{rates} Hz (default {_rate_key(p.rates.default_hz)})",
                "measures": ", ".join(p.measures),
                "timestamp": time_text,
            }
        )
    return rows
