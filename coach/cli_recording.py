"""Raw recordings on the command line: ``coach export``, ``coach simulate --profile``.

* ``coach simulate --profile NAME --out run.mcap``: the synthetic runner as that device would
  have streamed it (:mod:`coach.sources.packet_sim`), recorded raw like a live run (config,
  profile and version in the file), with the simulator's truth in ``run.truth/``.
* ``coach export run.mcap --csv DIR``: decode (as live) and write a CSV session folder;
  ``--decoded`` writes a copy of the recording with the decoded channels added (samples per
  sensor, events, strides, cues, quality as JSON) for Foxglove.

Config used to detect events for ``--decoded`` (and by ``coach replay`` of a recording): the
user's ``--config`` file (the bundled default without it); ``--recorded-config`` takes the
config stored in the recording instead. Which one was used is printed.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import tomli_w

from coach.config import (
    DEFAULT_CONFIG_PATH,
    CoachConfig,
    load_config,
    parse_config,
)
from coach.errors import SessionFormatError
from coach.profiles import FirmwareProfile, available_profiles, load_profile
from coach.runtime import Pipeline, recorded_sensor_specs
from coach.sinks.recorder import ProfileText, Recorder
from coach.sources.csv_folder import CsvSession, write_session
from coach.sources.packet_sim import LinkParams, PacketRun, simulate_packets, write_truth
from coach.sources.recorded_session import RATES_METADATA_KEY, RecordedSession, join_samples
from coach.sources.recording import Recording, open_recording
from coach.sources.simulate import SimulationParams
from coach.types import Location
from coach.wire import DecodedSamples

#: Suffix of the truth folder written beside a simulated recording (``run.mcap`` -> ``run.truth``).
TRUTH_SUFFIX = ".truth"


# -- configs and profiles ----------------------------------------------------------------------


def load_user_config(path: Path | None) -> CoachConfig:
    """The config file given (the bundled default when None), validated."""
    return load_config(path, known_profiles=set(available_profiles()))


def recorded_config(recording: Recording) -> CoachConfig:
    """The config stored in a recording.

    Raises:
        SessionFormatError: the recording holds no config.
        ConfigError: the stored config is invalid for this coach version.

    """
    text = recording.config_toml
    if not text:
        raise SessionFormatError(
            f"{recording.path}: the recording holds no config; replay it with --config FILE"
        )
    source = f"{recording.path}: config.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SessionFormatError(f"{source}: not valid TOML: {error}") from None
    return parse_config(data, source)


def choose_config(
    args: argparse.Namespace, recording: Recording, given: CoachConfig | None = None
) -> tuple[CoachConfig, str]:
    """The config for a recording and a line saying which one it is.

    ``--recorded-config`` picks the recording's; otherwise ``given`` (already loaded) or the
    ``--config`` file, the bundled default without one.
    """
    if getattr(args, "recorded_config", False):
        return recorded_config(recording), f"Config: the one stored in {recording.path.name}"
    path = getattr(args, "config", None)
    config = given if given is not None else load_user_config(path)
    name = str(path) if path is not None else f"{DEFAULT_CONFIG_PATH.name} (bundled default)"
    note = " (stored config ignored; --recorded-config uses it)" if recording.config_toml else ""
    return config, f"Config: {name}{note}"


def profile_text(name_or_path: str, profile: FirmwareProfile) -> str:
    """The TOML text of a profile as used: its file, or the model written out."""
    known = available_profiles()
    file = known.get(name_or_path) or (
        Path(name_or_path) if name_or_path.endswith(".toml") else None
    )
    if file is not None and file.is_file():
        return file.read_text(encoding="utf-8")
    return tomli_w.dumps(profile.model_dump(mode="json", exclude_none=True))


def _simulated_config_toml(profile: str, locations: list[Location]) -> str:
    """The bundled default config with one sensor of ``profile`` per simulated location."""
    data = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    data["sensors"] = [
        {"location": loc.value, "profile": profile, "name": f"simulated {loc.value}"}
        for loc in locations
    ]
    parse_config(data, str(DEFAULT_CONFIG_PATH))  # still valid
    return tomli_w.dumps(data)


# -- coach simulate --profile -----------------------------------------------------------------


def truth_folder(recording_path: Path) -> Path:
    """Where the truth of a simulated recording goes: ``run.mcap`` -> ``run.truth/``."""
    return recording_path.with_suffix(TRUTH_SUFFIX)


def record_packet_run(
    packet_run: PacketRun,
    path: Path,
    profile_toml: str,
    *,
    config_toml: str | None = None,
    overwrite: bool = False,
) -> int:
    """Record a packet run raw, like a live run; returns the notifications written.

    Raises:
        RecordingError: the file cannot be created (or exists and ``overwrite`` is False).

    """
    locations = list(packet_run.run.blocks)
    profile = packet_run.profile
    if config_toml is None:
        config_toml = _simulated_config_toml(profile.name, locations)
    params = packet_run.run.params
    metadata = {
        RATES_METADATA_KEY: json.dumps({loc.value: packet_run.rate_hz for loc in locations}),
        "source": "coach simulate --profile (coach.sources.packet_sim)",
        "simulation": json.dumps(asdict(params), default=str),
    }
    # The recorder's flush clock follows the session, so chunks close every flush interval of
    # the run as they would live (a cut file then loses as little as a live one).
    session_clock = _SessionClock()
    with Recorder(
        path,
        config_toml,
        {loc.value: ProfileText(profile.name, profile_toml) for loc in locations},
        fsync=False,
        extra_metadata=metadata,
        overwrite=overwrite,
        clock=session_clock,
    ) as recorder:
        for packet in packet_run.packets:
            session_clock.now = packet.host_time_s
            recorder.write_raw(packet.location.value, packet.host_time_s, packet.payload)
    if recorder.error is not None:
        raise SessionFormatError(f"{path}: writing the recording failed: {recorder.error}")
    return len(packet_run.packets)


class _SessionClock:
    """A clock that reads the session time of the notification being written, s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_simulated_recording(
    params: SimulationParams,
    profile_name: str,
    path: Path,
    link: LinkParams | None = None,
    *,
    overwrite: bool = False,
) -> PacketRun:
    """Simulate, encode for a profile, record to ``path`` and write ``path``'s truth folder."""
    profile = load_profile(profile_name)
    packet_run = simulate_packets(params, profile, link)
    record_packet_run(packet_run, path, profile_text(profile_name, profile), overwrite=overwrite)
    write_truth(packet_run, truth_folder(path))
    return packet_run


def run_simulate_recording(params: SimulationParams, profile_name: str, out: Path) -> int:
    """``coach simulate --profile``: write the recording and its truth, print what was done."""
    if out.suffix != ".mcap":
        raise SessionFormatError(
            f"--out {out}: with --profile the output is a recording file; name it *.mcap, "
            "e.g. run.mcap"
        )
    packet_run = write_simulated_recording(params, profile_name, out)
    run = packet_run.run
    ics = sum(1 for e in run.events if e.kind.value == "initial_contact")
    print(
        f"wrote {out}: {len(packet_run.packets)} notifications of {packet_run.profile.name} "
        f"({packet_run.profile.device}) from {', '.join(loc.value for loc in run.blocks)} "
        f"({params.duration_s:g} s at {packet_run.rate_hz:g} Hz)"
    )
    for loc, link in packet_run.links.items():
        print(
            f"  {loc.value:<12} {link.packets:>6} packets  {link.samples_sent:>7} samples  "
            f"connection interval {link.connection_interval_s * 1000:.2f} ms  "
            f"lost samples {run.sensors[loc].samples_dropped}"
        )
    print(
        f"truth in {truth_folder(out)}: {ics} initial contacts, {len(run.strides)} stances; "
        f"replay with: coach replay {out}"
    )
    return 0


# -- coach export -----------------------------------------------------------------------------


def _copy_metadata(recording: Recording) -> dict[str, str]:
    reserved = {"format", "start_wall_ns", "start_wall_iso", "flush_interval_s", "sensors"}
    meta = {k: v for k, v in recording.metadata.items() if k not in reserved}
    meta.pop("raw_channels", None)
    if recording.software_version:
        meta["recorded_software_version"] = recording.software_version
    meta["derived_from"] = recording.path.name
    return meta


def export_recording(
    session: RecordedSession,
    config: CoachConfig,
    *,
    csv_dir: Path | None = None,
    mcap_out: Path | None = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Decode a recording once; write a CSV session folder and/or a decoded copy.

    The copy holds every raw notification again plus ``/samples/<location>``, ``/events``,
    ``/strides``, ``/cues`` and ``/quality`` (JSON) from the same pipeline as a replay.
    Returns counts of what was written.
    """
    recording = session.recording
    parts: dict[Location, list[DecodedSamples]] = {loc: [] for loc in session.sensors}
    counts = {"packets": 0, "samples": 0, "events": 0, "strides": 0, "cues": 0, "quality": 0}
    recorder: Recorder | None = None
    if mcap_out is not None:
        profiles = {
            loc.value: ProfileText(
                s.profile.name,
                recording.profiles.get(s.profile.name)
                or tomli_w.dumps(s.profile.model_dump(mode="json", exclude_none=True)),
            )
            for loc, s in session.sensors.items()
        }
        recorder = Recorder(
            mcap_out,
            recording.config_toml or "",
            profiles,
            fsync=False,
            start_wall_ns=recording.start_wall_ns,
            extra_metadata=_copy_metadata(recording),
            overwrite=overwrite,
        )
    pipeline = Pipeline(config, recorded_sensor_specs(session)) if recorder else None
    try:
        for item in session.iter_decoded():
            counts["packets"] += 1
            if csv_dir is not None and len(item.samples):
                parts[item.location].append(item.samples)
            if recorder is None or pipeline is None:
                continue
            recorder.write_raw(item.location.value, item.host_time_s, item.payload)
            if len(item.samples):
                block = item.samples.to_block(item.location)
                recorder.write_value(block)
                _write_outputs(recorder, counts, *pipeline.feed(block))
        if recorder is not None and pipeline is not None:
            _write_outputs(recorder, counts, *pipeline.finish())
    finally:
        if recorder is not None:
            recorder.close()
    counts["samples"] = sum(s.samples for s in session.stats.values())
    if csv_dir is not None:
        blocks = {loc: join_samples(loc, p) for loc, p in parts.items() if p}
        if not blocks:
            raise SessionFormatError(f"{recording.path}: no sample could be decoded")
        write_session(csv_dir, CsvSession(blocks, session.describe()))
    return counts


def _write_outputs(recorder: Recorder, counts: dict[str, int], output: Any, cues: Any) -> None:
    for name, values in (
        ("events", output.events),
        ("strides", output.strides),
        ("quality", output.quality),
        ("cues", cues),
    ):
        for value in values:
            recorder.write_value(value)
        counts[name] += len(values)


def _decoded_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.decoded.mcap")


def run_export(args: argparse.Namespace) -> int:
    """``coach export``: decode a recording to a CSV folder and/or a decoded MCAP copy."""
    if args.csv is None and not args.decoded and args.mcap_out is None:
        raise SessionFormatError(
            "coach export: nothing to do; give --csv DIR and/or --decoded (or --mcap-out FILE)"
        )
    recording = open_recording(args.recording)
    session = RecordedSession(recording)
    mcap_out = args.mcap_out or (_decoded_path(args.recording) if args.decoded else None)
    if mcap_out is not None and Path(mcap_out).resolve() == Path(args.recording).resolve():
        raise SessionFormatError("--mcap-out must differ from the recording (it is a copy)")
    config, config_line = choose_config(args, recording)
    if mcap_out is not None:
        print(config_line)
    counts = export_recording(
        session, config, csv_dir=args.csv, mcap_out=mcap_out, overwrite=args.force
    )
    print(f"Recording {args.recording}: {counts['packets']} notifications decoded")
    print(format_decoder_stats(session))
    warning = truncation_warning(session)
    if warning:
        print(warning)
    if args.csv is not None:
        print(f"wrote CSV session folder {args.csv} ({counts['samples']} samples, meta.toml)")
    if mcap_out is not None:
        print(
            f"wrote {mcap_out}: raw channels plus /samples/<location>, {counts['events']} events, "
            f"{counts['strides']} strides, {counts['cues']} cues, {counts['quality']} quality "
            "changes (JSON, open it in Foxglove)"
        )
    return 0


# -- summaries shared with coach replay -------------------------------------------------------


def format_decoder_stats(session: RecordedSession) -> str:
    """A table of the decoder counters: one row per sensor, with its profile and rate."""
    columns = ("packets", "samples", "malformed", "duplicates", "out-of-order", "lost", "resyncs")
    lines = [
        "Decoder counters (lost = samples missing by counter/timestamp/arrival):",
        f"  {'sensor':<12} {'profile':<20} {'rate':>8}" + "".join(f" {c:>7}" for c in columns),
    ]
    for loc, sensor in sorted(session.sensors.items(), key=lambda kv: kv[0].value):
        s = session.stats[loc]
        values = (
            s.packets,
            s.samples,
            s.malformed,
            s.duplicates,
            s.out_of_order,
            s.lost_samples,
            s.resyncs,
        )
        rate = f"{sensor.rate_hz:g} Hz"
        lines.append(
            f"  {loc.value:<12} {sensor.profile.name:<20} {rate:>8}"
            + "".join(f" {v:>{max(7, len(c))}}" for c, v in zip(columns, values, strict=True))
        )
    if session.unknown_packets:
        lines.append(f"  ({session.unknown_packets} notifications of unlisted sensors skipped)")
    return "\n".join(lines)


def truncation_warning(session: RecordedSession, reached_s: float | None = None) -> str | None:
    """The warning line for a truncated recording (None when it is complete)."""
    if not session.truncated:
        return None
    where = f" up to {reached_s:.1f} s" if reached_s is not None else ""
    return (
        f"WARNING: {session.recording.path} is truncated (no MCAP footer or a damaged end: the "
        f"run was interrupted); decoded{where}, to its last complete record"
    )


# -- parsers ---------------------------------------------------------------------------------


def add_recording_parsers(
    commands: Any,
    replay: argparse.ArgumentParser | None = None,
) -> None:
    """Register ``coach export``; teach ``coach replay`` about recordings."""
    if replay is not None:
        for action in replay._actions:
            if action.dest == "path":
                action.help = "CSV session folder or .mcap recording"
        replay.add_argument(
            "--recorded-config",
            action="store_true",
            help="for a recording: use the config stored in it instead of --config",
        )
    export = commands.add_parser(
        "export",
        help="decode a .mcap recording to a CSV session folder and/or a decoded copy (Foxglove)",
        description="Decode a raw recording through the same decoders as a live run. --csv "
        "writes a CSV session folder; --decoded writes a copy of the recording with the decoded "
        "samples, events, strides, cues and quality as JSON channels beside the raw ones.",
    )
    export.add_argument("recording", type=Path, help="the .mcap recording")
    export.add_argument("--csv", type=Path, metavar="DIR", help="write a CSV session folder")
    export.add_argument(
        "--decoded",
        action="store_true",
        help="write RECORDING.decoded.mcap: raw plus decoded channels",
    )
    export.add_argument(
        "--mcap-out",
        type=Path,
        metavar="FILE",
        help="where the decoded copy goes (implies --decoded)",
    )
    export.add_argument("--force", action="store_true", help="overwrite an existing decoded copy")
    export.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config for the detection of the decoded copy (default: the bundled default)",
    )
    export.add_argument(
        "--recorded-config",
        action="store_true",
        help="use the config stored in the recording instead of --config",
    )
    handler: Callable[[argparse.Namespace], int] = run_export
    export.set_defaults(handler=handler)
