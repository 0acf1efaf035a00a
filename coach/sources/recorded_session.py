"""A raw recording decoded the way a live run decodes: one :class:`coach.wire.Decoder` per sensor.

The notifications of a recording (:mod:`coach.sources.recording`) are fed, in file order (the
order they arrived in), to the decoder of their sensor with their recorded host receive times.
So a replay re-runs the whole path after the radio: framing, reassembly, counters, timestamps,
clock estimation. The decoder counters (malformed, duplicates, out-of-order, lost samples,
resyncs) come out per sensor; bad packets are counted, never raised.

Each sensor is decoded with the firmware profile stored in the recording (the bundled profile
of that name when the file lost it) at the rate given by the ``rates_hz`` key of the
``coach.session`` metadata (JSON object location -> Hz; the profile's default rate when absent).

Example::

    session = RecordedSession(open_recording("run.mcap"))
    for host_time_s, block in session.iter_blocks(block_s=0.05):
        ...
    print(session.stats[Location.PELVIS].lost_samples)
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from coach.errors import ProfileError, SessionFormatError
from coach.profiles import FirmwareProfile, load_profile, parse_profile
from coach.sources.csv_folder import CsvSession
from coach.sources.recording import Recording
from coach.types import Location, SampleBlock
from coach.wire import DecodedSamples, Decoder, DecoderStats

#: Key of the ``coach.session`` metadata with the configured rate of each sensor.
RATES_METADATA_KEY = "rates_hz"


@dataclass(frozen=True)
class DecodedSensor:
    """How one recorded sensor is decoded.

    Attributes:
        location: where it was worn.
        profile: the firmware profile used.
        rate_hz: the configured sample rate, Hz.
        rate_source: where the rate came from (``recording``, ``profile default`` or
            ``given``).

    """

    location: Location
    profile: FirmwareProfile
    rate_hz: float
    rate_source: str

    @property
    def has_gyro(self) -> bool:
        """True when the sensor measures angular rate."""
        return self.profile.has_gyro


@dataclass(frozen=True)
class DecodedPacket:
    """The samples one notification gave (possibly none).

    Attributes:
        location: sensor location.
        host_time_s: host receive time, session s.
        payload: the notification as recorded.
        samples: what the decoder made of it.

    """

    location: Location
    host_time_s: float
    payload: bytes
    samples: DecodedSamples


def _recorded_profile(recording: Recording, name: str) -> FirmwareProfile:
    text = recording.profiles.get(name)
    if text is None:
        return load_profile(name)
    source = f"{recording.path}: profiles/{name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{source}: not valid TOML: {error}") from None
    return parse_profile(data, source)


def _recorded_rates(recording: Recording) -> dict[str, Any]:
    text = recording.metadata.get(RATES_METADATA_KEY)
    if not text:
        return {}
    try:
        rates = json.loads(text)
    except ValueError:
        return {}
    return rates if isinstance(rates, dict) else {}


class RecordedSession:
    """A recording opened for decoding (see the module docstring).

    Args:
        recording: the opened recording.
        rates_hz: location -> configured rate, Hz, overriding the recorded one.

    Attributes:
        recording: the recording.
        sensors: how each recorded location is decoded.
        decoders: the decoder of each location (fresh per iteration).
        unknown_packets: notifications on a channel whose location the metadata does not list.

    Raises:
        ProfileError: a stored profile is invalid, or a missing one is not bundled.
        SessionFormatError: the recording lists no sensor.

    """

    def __init__(self, recording: Recording, rates_hz: Mapping[str, float] | None = None) -> None:
        self.recording = recording
        if not recording.sensors:
            raise SessionFormatError(
                f"{recording.path}: the recording lists no sensor (it was cut before any "
                "data was written)"
            )
        recorded = _recorded_rates(recording)
        self.sensors: dict[Location, DecodedSensor] = {}
        for location, sensor in recording.sensors.items():
            profile = _recorded_profile(recording, sensor.profile)
            given = (rates_hz or {}).get(location.value)
            stored = recorded.get(location.value)
            if given is not None:
                rate, source = profile.check_rate(float(given)), "given"
            elif isinstance(stored, int | float) and math.isfinite(stored):
                rate, source = profile.check_rate(float(stored)), "recording"
            else:
                rate, source = profile.rates.default_hz, "profile default"
            self.sensors[location] = DecodedSensor(location, profile, rate, source)
        self.decoders: dict[Location, Decoder] = {}
        self.unknown_packets = 0
        self._reset()

    def _reset(self) -> None:
        self.decoders = {loc: Decoder(s.profile, s.rate_hz) for loc, s in self.sensors.items()}
        self.unknown_packets = 0

    @property
    def stats(self) -> dict[Location, DecoderStats]:
        """Decoder counters per location (of the current or last iteration)."""
        return {loc: dec.stats for loc, dec in self.decoders.items()}

    @property
    def truncated(self) -> bool:
        """True when the recording is cut short or damaged (known fully after iterating)."""
        return self.recording.truncated

    def iter_decoded(self) -> Iterator[DecodedPacket]:
        """Decode every notification in file order; restarts the decoders."""
        self._reset()
        decoders = self.decoders
        for packet in self.recording.iter_raw():
            decoder = decoders.get(packet.location)
            if decoder is None:
                self.unknown_packets += 1
                continue
            samples = decoder.feed(packet.payload, packet.host_time_s)
            yield DecodedPacket(packet.location, packet.host_time_s, packet.payload, samples)

    def iter_blocks(self, block_s: float = 0.0) -> Iterator[tuple[float, SampleBlock]]:
        """Decoded samples as blocks, each with the host time at which it was complete.

        Args:
            block_s: 0: one block per notification that gave samples (as live). > 0: the
                samples of a sensor are gathered until ``block_s`` of host time has passed since
                its block started (fewer, larger blocks; the same results, faster).

        """
        pending: dict[Location, list[DecodedSamples]] = {}
        started: dict[Location, float] = {}
        last_host = 0.0
        for item in self.iter_decoded():
            last_host = max(last_host, item.host_time_s)
            if not len(item.samples):
                continue
            loc = item.location
            if block_s <= 0.0:
                yield item.host_time_s, item.samples.to_block(loc)
                continue
            parts = pending.setdefault(loc, [])
            if not parts:
                started[loc] = item.host_time_s
            parts.append(item.samples)
            if item.host_time_s - started[loc] >= block_s:
                yield item.host_time_s, join_samples(loc, parts)
                pending[loc] = []
        tail = [(float(parts[-1].t[-1]), loc, parts) for loc, parts in pending.items() if parts]
        for _, loc, parts in sorted(tail, key=lambda x: (x[0], x[1].value)):
            yield last_host, join_samples(loc, parts)

    def read_all(self) -> CsvSession:
        """Decode everything into one block per sensor (e.g. to export a CSV session folder).

        A sensor that gave no sample is left out. ``meta`` describes the recording.
        """
        parts: dict[Location, list[DecodedSamples]] = {loc: [] for loc in self.sensors}
        for item in self.iter_decoded():
            if len(item.samples):
                parts[item.location].append(item.samples)
        blocks = {loc: join_samples(loc, p) for loc, p in parts.items() if p}
        return CsvSession(blocks, self.describe())

    def describe(self) -> dict[str, Any]:
        """What the recording is and how it was decoded (for ``meta.toml``)."""
        rec = self.recording
        meta: dict[str, Any] = {
            "source": f"coach recording {rec.path.name}, decoded by coach.wire",
            "recording": str(rec.path),
            "sensors": {
                loc.value: {
                    "profile": s.profile.name,
                    "rate_hz": s.rate_hz,
                    "decoder": self.decoders[loc].stats.as_dict(),
                }
                for loc, s in self.sensors.items()
            },
        }
        if rec.software_version:
            meta["software_version"] = rec.software_version
        if rec.start_time is not None:
            meta["start_wall_iso"] = rec.start_time.isoformat()
        if rec.truncated:
            meta["truncated"] = True
        return meta


def join_samples(location: Location, parts: list[DecodedSamples]) -> SampleBlock:
    """Consecutive decoded samples of one sensor as one block."""
    if len(parts) == 1:
        return parts[0].to_block(location)
    gyr = [p.gyr for p in parts if p.gyr is not None]
    return SampleBlock(
        location,
        np.concatenate([p.t for p in parts]),
        np.concatenate([p.acc for p in parts]),
        np.concatenate(gyr) if len(gyr) == len(parts) else None,
    )
