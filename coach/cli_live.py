"""``coach run``, ``coach scan`` and ``coach emulate``: the live side of the command line.

``--emulate`` runs the same code paths against emulated sensors (Bumble peripherals streaming a
simulated run on an in-process BLE link, reached through the real bleak API), so a run can be
tried, and is tested, without hardware.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coach.config import CoachConfig, SensorConfig
from coach.live import LiveOptions, LiveResult, LiveSession, default_record_path
from coach.profiles import load_profile
from coach.sinks.csv_out import write_cues, write_events, write_strides
from coach.sinks.summary import format_summary
from coach.sources.ble import BleBackend, bundled_profiles, scan
from coach.sources.simulate import SimulationParams, simulate
from coach.types import Location

Handler = Callable[[argparse.Namespace], int]


@dataclass
class Emulation:
    """Emulated sensors on an in-process link, and the bleak backend that reaches them."""

    backend: BleBackend
    clock: Callable[[], float]
    config: CoachConfig


def add_live_parsers(commands: Any, load: Callable[[Path | None], CoachConfig]) -> None:
    """Register ``run``, ``scan`` and ``emulate`` (``load`` reads and validates a config)."""
    run = commands.add_parser(
        "run",
        help="a live run: connect the config's sensors, detect, speak cues, record",
        description="Connect the sensors named in the config (address or name, location, "
        "profile), stream, detect foot contacts and pelvic motion, speak cues, publish over "
        "MQTT when enabled, and record the raw data. Ctrl-C or SIGTERM stops cleanly.",
    )
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config (default: configs/default.toml); watched for live reload",
    )
    run.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help="stop after this long (default: until Ctrl-C)",
    )
    run.add_argument(
        "--audio",
        choices=("device", "none"),
        default=None,
        help="speak cues on the sound device, or not (default: the config's)",
    )
    run.add_argument(
        "--record",
        type=Path,
        default=None,
        help="recording file (default: <recording.directory>/<athlete>-<time>.mcap)",
    )
    run.add_argument("--no-record", action="store_true", help="do not record")
    run.add_argument("--no-view", action="store_true", help="no live terminal view")
    run.add_argument(
        "--connect-timeout-s",
        type=float,
        default=20.0,
        help="how long to look for the sensors at start (default 20)",
    )
    run.add_argument("--events-out", type=Path, help="write the events CSV at the end")
    run.add_argument("--strides-out", type=Path, help="write the strides CSV at the end")
    run.add_argument("--cues-out", type=Path, help="write the cues CSV at the end")
    _add_emulation_options(run)
    run.set_defaults(handler=lambda args: _cmd_run(args, load(args.config)))

    scan_parser = commands.add_parser(
        "scan", help="list nearby sensors that match a firmware profile"
    )
    scan_parser.add_argument("--timeout", type=float, default=5.0, help="scan time, s (default 5)")
    scan_parser.add_argument("--all", action="store_true", help="also list unknown devices")
    _add_emulation_options(scan_parser)
    scan_parser.set_defaults(handler=lambda args: _cmd_scan(args, load(None)))

    emulate = commands.add_parser(
        "emulate",
        help="emulated sensors streaming a simulated run to the host's Bluetooth stack",
        description="Bumble peripherals that advertise and stream like the config's sensors. "
        "With --transport vhci (Linux, root, `modprobe hci_vhci`) BlueZ sees them as real "
        "devices, so `coach scan` and `coach run` can be tried without hardware.",
    )
    emulate.add_argument("--config", type=Path, default=None, help="TOML config")
    emulate.add_argument("--transport", default="vhci", help="bumble HCI transport (default vhci)")
    emulate.add_argument("--duration-s", type=float, default=600.0, help="simulated run length")
    emulate.add_argument("--seed", type=int, default=0)
    emulate.set_defaults(handler=lambda args: _cmd_emulate(args, load(args.config)))


def _add_emulation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("emulated sensors (no hardware)")
    group.add_argument(
        "--emulate",
        action="store_true",
        help="use emulated sensors on an in-process BLE link instead of Bluetooth",
    )
    group.add_argument("--emulate-seed", type=int, default=0, help="seed of the simulated run")
    group.add_argument(
        "--emulate-speed",
        type=float,
        default=1.0,
        help="emulated time per real second (default 1: real pace)",
    )
    group.add_argument(
        "--emulate-disconnect",
        default=None,
        metavar="LOCATION@S[+S]",
        help="drop a sensor at S seconds for +S seconds, e.g. right_shank@20+3",
    )
    group.add_argument(
        "--emulate-absent",
        action="append",
        default=[],
        metavar="LOCATION",
        help="do not emulate this configured sensor (it never appears); repeatable",
    )


def _emulated_sensor_configs(config: CoachConfig) -> list[SensorConfig]:
    from coach.sources.emulated_sensor import example_name

    return [
        s.model_copy(
            update={"address": None, "name": example_name(load_profile(s.profile), s.location)}
        )
        for s in config.sensors
    ]


@contextlib.asynccontextmanager
async def emulation(args: argparse.Namespace, config: CoachConfig) -> AsyncIterator[Emulation]:
    """Start emulated sensors for the config's sensors; yields the backend that reaches them."""
    from bumble.link import LocalLink

    from coach.sources.bumble_backend import BumbleRadio
    from coach.sources.emulated_sensor import EmulatedClock, EmulatedSensor

    duration = float(getattr(args, "duration_s", None) or 600.0) + 30.0
    sensors_config = _emulated_sensor_configs(config)
    locations = tuple(Location(s.location) for s in sensors_config)
    simulated = simulate(
        SimulationParams(
            duration_s=duration,
            seed=args.emulate_seed,
            sensors=locations,
            mount="tilted",
            noise="realistic",
        )
    )
    disconnect = _parse_disconnect(args.emulate_disconnect)
    link = LocalLink()  # type: ignore[no-untyped-call]
    radio = BumbleRadio(link)
    clock = EmulatedClock(args.emulate_speed)
    sensors = []
    for i, sensor_config in enumerate(sensors_config):
        location = Location(sensor_config.location)
        drop_at = drop_for = None
        if disconnect is not None and disconnect[0] is location:
            drop_at, drop_for = disconnect[1], disconnect[2]
        sensors.append(
            EmulatedSensor(
                load_profile(sensor_config.profile),
                location,
                simulated.blocks[location],
                link,
                address=f"C0:AC:00:00:00:{i + 1:02X}",
                name=sensor_config.name,
                clock=clock,
                disconnect_at_s=drop_at,
                reconnect_after_s=drop_for,
            )
        )
    absent = {Location(name) for name in getattr(args, "emulate_absent", [])}
    sensors = [sensor for sensor in sensors if sensor.location not in absent]
    try:
        for sensor in sensors:
            await sensor.start()
        yield Emulation(
            BleBackend(radio.client_backend, radio.scanner_backend),
            clock.now,
            config.model_copy(update={"sensors": sensors_config}),
        )
    finally:
        for sensor in sensors:
            await sensor.stop()
        await radio.close()


def _parse_disconnect(text: str | None) -> tuple[Location, float, float] | None:
    if not text:
        return None
    from coach.cli_simulate import SimulationArgumentError

    try:
        location, _, times = text.partition("@")
        start, _, length = times.partition("+")
        return Location(location), float(start), float(length or 3.0)
    except ValueError:
        raise SimulationArgumentError(
            f"--emulate-disconnect {text!r}: expected LOCATION@SECONDS[+SECONDS], "
            "e.g. right_shank@20+3"
        ) from None


async def run_live(args: argparse.Namespace, config: CoachConfig) -> LiveResult:
    """A live run with the options of ``coach run`` (real or emulated sensors)."""
    record_path = None
    if not args.no_record and config.recording.enabled:
        record_path = args.record or default_record_path(config)
        record_path.parent.mkdir(parents=True, exist_ok=True)
    options = LiveOptions(
        duration_s=args.duration_s,
        audio=args.audio or config.audio.output,
        record_path=record_path,
        config_path=args.config,
        view=not args.no_view,
        connect_timeout_s=args.connect_timeout_s,
    )
    if args.emulate:
        async with emulation(args, config) as emulated:
            return await LiveSession(
                emulated.config, options, emulated.backend, emulated.clock
            ).run()
    return await LiveSession(config, options).run()


def _cmd_run(args: argparse.Namespace, config: CoachConfig) -> int:
    result = asyncio.run(run_live(args, config))
    run = result.run
    print()
    print(format_summary(run.strides, run.cues, run.duration_s))
    print()
    for location, stats in result.decoder_stats.items():
        print(f"  {location:<12} " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    if result.dropped_packets:
        print(f"  {result.dropped_packets} packets dropped: the processing fell behind")
    if result.record_path is not None:
        print(f"recorded -> {result.record_path} (replay: coach replay {result.record_path})")
    if args.events_out:
        write_events(args.events_out, run.events)
    if args.strides_out:
        write_strides(args.strides_out, run.strides)
    if args.cues_out:
        write_cues(args.cues_out, run.cues)
    return 0


def _cmd_scan(args: argparse.Namespace, config: CoachConfig) -> int:
    async def go() -> list[Any]:
        if args.emulate:
            args.duration_s = 60.0
            async with emulation(args, config) as emulated:
                return await scan(
                    args.timeout, bundled_profiles(), emulated.backend, include_unknown=args.all
                )
        return await scan(args.timeout, bundled_profiles(), include_unknown=args.all)

    found = asyncio.run(go())
    if not found:
        print(
            f"no sensor found in {args.timeout:g} s (switched on? in range? not connected "
            "to a phone app?)"
        )
        return 1
    print(f"{'address':<20} {'name':<28} {'rssi':>5}  profile")
    for device in found:
        print(
            f"{device.address:<20} {device.name or '':<28} {device.rssi or 0:>5}  "
            f"{device.profile_name or '(unknown)'}"
        )
    print("\nPut the address or name of each sensor in the config's [[sensors]] tables.")
    return 0


def _cmd_emulate(args: argparse.Namespace, config: CoachConfig) -> int:
    from bumble.link import LocalLink

    from coach.sources.emulated_sensor import EmulatedClock, EmulatedSensor, serve

    sensors_config = _emulated_sensor_configs(config)
    locations = tuple(Location(s.location) for s in sensors_config)
    simulated = simulate(
        SimulationParams(
            duration_s=args.duration_s, seed=args.seed, sensors=locations, mount="tilted"
        )
    )
    link = LocalLink()  # type: ignore[no-untyped-call]
    clock = EmulatedClock()
    sensors = [
        EmulatedSensor(
            load_profile(s.profile),
            Location(s.location),
            simulated.blocks[Location(s.location)],
            link,
            address=f"C0:AC:00:00:00:{i + 1:02X}",
            name=s.name,
            clock=clock,
        )
        for i, s in enumerate(sensors_config)
    ]
    print(
        "emulating: "
        + ", ".join(f"{s.name} ({s.profile})" for s in sensors_config)
        + f" on transport {args.transport}; Ctrl-C stops"
    )
    asyncio.run(serve(sensors, transport=args.transport, duration_s=args.duration_s))
    return 0
