"""``coach simulate``: a synthetic runner written as a CSV session folder with its ground truth.

With ``--profile NAME`` the output is instead a raw ``.mcap`` recording, as if that device had
streamed the run over BLE (see :mod:`coach.cli_recording`), with the truth in ``<name>.truth/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coach.errors import CoachError
from coach.types import Location

#: Sample rate of a simulated CSV session when --rate-hz is not given, Hz.
DEFAULT_RATE_HZ = 200.0


class SimulationArgumentError(CoachError):
    """A simulate option is out of range."""

    exit_code = 2


def add_simulate_parser(commands: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """Register ``coach simulate`` on the subcommand parser ``commands``."""
    sim = commands.add_parser(
        "simulate",
        help="write a synthetic run (CSV session folder + ground truth in DIR/truth/, or with "
        "--profile a raw .mcap recording + truth in NAME.truth/)",
        description="Simulate a runner: segment kinematics over the gait cycle, then what each "
        "sensor measures (specific force incl. gravity, angular rate), with noise, bias, "
        "quantisation, saturation, mounting, packet loss and clock drift. The same seed gives "
        "the same bytes. See docs/simulator.md.",
    )
    sim.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (with --profile: the .mcap recording to write)",
    )
    sim.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="firmware profile (`coach profiles`): write a raw recording of the "
        "notifications that device would have sent (counters, timestamps, BLE "
        "connection-interval batching and delays) instead of a CSV folder",
    )
    sim.add_argument(
        "--duration-s", type=float, default=60.0, help="session length, s (default 60)"
    )
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument(
        "--rate-hz",
        type=float,
        default=None,
        help="sample rate, Hz (default 200; with --profile the profile's default)",
    )
    sim.add_argument("--cadence-spm", type=float, default=170.0, help="cadence, steps/min")
    sim.add_argument("--speed-mps", type=float, default=3.0, help="running speed, m/s")
    sim.add_argument(
        "--pelvic-drop-deg",
        type=float,
        default=5.0,
        help="mean contralateral pelvic drop per stance, degrees",
    )
    sim.add_argument(
        "--pelvic-rotation-deg",
        type=float,
        default=10.0,
        help="mean peak-to-peak pelvic rotation per step, degrees",
    )
    sim.add_argument(
        "--sensors",
        default="pelvis,left_shank,right_shank",
        help="comma-separated locations (default pelvis,left_shank,right_shank)",
    )
    sim.add_argument(
        "--mount",
        choices=("nominal", "tilted", "random"),
        default="nominal",
        help="sensor mounting: aligned with the segment, tilted 10-40 deg, or any rotation",
    )
    sim.add_argument(
        "--noise",
        choices=("none", "low", "realistic", "high"),
        default="realistic",
        help="sensor noise, bias, quantisation and saturation level",
    )
    sim.add_argument(
        "--packet-loss",
        type=float,
        default=0.0,
        help="fraction of samples lost, in whole packets (e.g. 0.01)",
    )
    sim.add_argument(
        "--clock-drift-ppm",
        type=float,
        default=0.0,
        help="per-sensor clock error up to this many ppm",
    )
    sim.add_argument(
        "--asymmetry",
        type=float,
        default=0.0,
        help="right-minus-left relative difference of step, contact time and drop",
    )
    sim.add_argument("--standing-s", type=float, default=0.0, help="quiet standing at the start, s")
    sim.add_argument(
        "--walk-break",
        action="append",
        default=[],
        metavar="START:END",
        help="walk from START to END seconds (repeatable)",
    )
    sim.add_argument(
        "--overground",
        action="store_true",
        help="overground (heading wanders, speed changes) instead of treadmill",
    )
    sim.add_argument(
        "--scenario",
        default="",
        help="form changes, e.g. 'pelvic_drop_deg=5->10@120s,cadence_spm=172->160@120s..600s'",
    )
    sim.set_defaults(handler=handler)


def _walk_breaks(values: list[str]) -> tuple[tuple[float, float], ...]:
    breaks = []
    for value in values:
        try:
            start, end = (float(v) for v in value.split(":"))
        except ValueError:
            raise SimulationArgumentError(
                f"--walk-break {value!r}: expected START:END in seconds, e.g. 120:180"
            ) from None
        breaks.append((start, end))
    return tuple(breaks)


def _sensors(text: str) -> tuple[Location, ...]:
    try:
        return tuple(Location(name.strip()) for name in text.split(",") if name.strip())
    except ValueError:
        raise SimulationArgumentError(
            f"--sensors {text!r}: choose from pelvis, left_shank, right_shank"
        ) from None


def _profile_rate(name: str) -> float:
    from coach.profiles import load_profile

    return load_profile(name).rates.default_hz


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate and write the session; returns the exit status."""
    from coach.sources.simulate import (
        SimulationParams,
        parse_scenario,
        simulate,
        write_simulated_session,
    )

    profile_name = getattr(args, "profile", None)
    rate_hz = args.rate_hz
    if rate_hz is None:
        rate_hz = _profile_rate(profile_name) if profile_name else DEFAULT_RATE_HZ
    try:
        params = SimulationParams(
            duration_s=args.duration_s,
            seed=args.seed,
            rate_hz=rate_hz,
            cadence_spm=args.cadence_spm,
            speed_mps=args.speed_mps,
            pelvic_drop_deg=args.pelvic_drop_deg,
            pelvic_rotation_deg=args.pelvic_rotation_deg,
            sensors=_sensors(args.sensors),
            mount=args.mount,
            noise=args.noise,
            packet_loss=args.packet_loss,
            clock_drift_ppm=args.clock_drift_ppm,
            asymmetry=args.asymmetry,
            standing_s=args.standing_s,
            walk_breaks=_walk_breaks(args.walk_break),
            overground=args.overground,
            scenario=parse_scenario(args.scenario),
        )
    except ValueError as error:
        raise SimulationArgumentError(str(error)) from None
    if profile_name:
        from coach.cli_recording import run_simulate_recording

        return run_simulate_recording(params, profile_name, args.out)
    run = simulate(params)
    write_simulated_session(run, args.out)
    ics = sum(1 for e in run.events if e.kind.value == "initial_contact")
    print(
        f"wrote {args.out}: {', '.join(loc.value for loc in run.blocks)} "
        f"({params.duration_s:g} s at {params.rate_hz:g} Hz), truth in {args.out / 'truth'}: "
        f"{ics} initial contacts, {len(run.strides)} stances"
    )
    return 0
