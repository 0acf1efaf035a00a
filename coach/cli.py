"""The ``coach`` command: subcommands with help texts; errors print one clear line, no traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import tomli_w

from coach import __version__
from coach.config import DEFAULT_CONFIG_PATH, CoachConfig, config_to_toml_dict, load_config
from coach.errors import CoachError, ConfigError

Handler = Callable[[argparse.Namespace], int]

#: The built-in demo run: 2 minutes at 200 Hz, sensors clipped on at unknown angles, with
#: the pelvic drop rising from 4 to 9 degrees between 60 and 70 s (a fault coach should cue).
DEMO_SIMULATION = [
    "--duration-s",
    "120",
    "--seed",
    "11",
    "--mount",
    "tilted",
    "--packet-loss",
    "0.005",
    "--clock-drift-ppm",
    "50",
    "--pelvic-drop-deg",
    "4",
    "--scenario",
    "pelvic_drop_deg=4->9@60s..70s",
]


def _known_profiles() -> set[str]:
    from coach.profiles import available_profiles

    return set(available_profiles())


def _load(path: Path | None) -> CoachConfig:
    return load_config(path, known_profiles=_known_profiles())


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args.file)
    print(f"# {args.file}: valid. Effective config:")
    print(tomli_w.dumps(config_to_toml_dict(config)), end="")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from coach.cli_replay import run_replay

    return run_replay(args, _load(args.config))


def _cmd_demo(args: argparse.Namespace) -> int:
    from coach.cli_replay import run_replay
    from coach.cli_simulate import run_simulate

    out = Path(args.out)
    session = out / "session"
    print("Simulating the built-in demo run: " + " ".join(DEMO_SIMULATION))
    sim_args = build_parser().parse_args(["simulate", "--out", str(session), *DEMO_SIMULATION])
    run_simulate(sim_args)
    print()
    args.path = session
    args.events_out = out / "events.csv"
    args.strides_out = out / "strides.csv"
    args.cues_out = out / "cues.csv"
    args.wav_out = out / "cues.wav"
    return run_replay(args, _load(args.config))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from coach.cli_simulate import run_simulate

    return run_simulate(args)


def _cmd_profiles(args: argparse.Namespace) -> int:
    from coach.profiles import describe_profiles

    rows = describe_profiles()
    if not rows:
        print("no firmware profiles found")
        return 1
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    return 0


def _cmd_say(args: argparse.Namespace) -> int:
    from coach.sinks.audio import say

    config = _load(args.config)
    audio = config.audio.model_copy(update={"output": args.audio}) if args.audio else config.audio
    say(args.phrase, audio)
    return 0


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config file (default: the bundled configs/default.toml)",
    )


def _add_replay_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events-out", type=Path, help="write the events CSV (t,t_detected,kind,side)"
    )
    parser.add_argument(
        "--strides-out", type=Path, help="write the strides CSV (one row per stance)"
    )
    parser.add_argument("--cues-out", type=Path, help="write the cues CSV (t,rule,phrase)")
    parser.add_argument(
        "--wav-out",
        type=Path,
        help="write a WAV track of the whole run with each cue's speech at the moment it fired",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="0 (default): as fast as possible; 1: real pace "
        "(cues played live with --audio device)",
    )
    parser.add_argument(
        "--audio",
        choices=("device", "none"),
        default="none",
        help="play cues on the sound device during a --speed 1 replay (default: none)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="coach",
        description="Real-time running-form coach: IMUs on the pelvis and shanks, foot contacts, "
        "pelvic drop and rotation, spoken cues.",
    )
    parser.add_argument("--version", action="version", version=f"coach {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="simulate the built-in 3-sensor run and replay it: strides, cues and a WAV of "
        "the cues",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the session, the events, strides and cues CSVs and cues.wav "
        "(default out/demo)",
    )
    _add_config_option(demo)
    demo.set_defaults(handler=_cmd_demo, speed=0.0, audio="none", quiet=False)

    replay = commands.add_parser(
        "replay", help="replay a recording (.mcap) or CSV session folder through the pipeline"
    )
    replay.add_argument("path", type=Path, help="CSV session folder")
    _add_config_option(replay)
    _add_replay_outputs(replay)
    replay.set_defaults(handler=_cmd_replay)

    from coach.cli_simulate import add_simulate_parser

    add_simulate_parser(commands, _cmd_simulate)

    from coach.cli_tune import add_tuning_parsers

    add_tuning_parsers(commands)

    from coach.cli_recording import add_recording_parsers

    add_recording_parsers(commands, replay)

    from coach.cli_live import add_live_parsers

    add_live_parsers(commands, _load)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser(
        "check", help="validate a config file and print the effective config"
    )
    check.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=DEFAULT_CONFIG_PATH,
        help="TOML config file (default: the bundled configs/default.toml)",
    )
    check.set_defaults(handler=_cmd_config_check)

    profiles = commands.add_parser(
        "profiles", help="list the firmware profiles (supported sensors), rates and quantities"
    )
    profiles.set_defaults(handler=_cmd_profiles)

    say = commands.add_parser("say", help="speak a phrase to check the voice and the sound device")
    say.add_argument("phrase", help='what to say, e.g. "squeeze, relax, float"')
    say.add_argument(
        "--audio",
        choices=("device", "none"),
        default=None,
        help="output (default: the config's [audio] output)",
    )
    _add_config_option(say)
    say.set_defaults(handler=_cmd_say)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        print(f"coach: invalid config {error.source}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return error.exit_code
    except CoachError as error:
        print(f"coach: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("coach: interrupted", file=sys.stderr)
        return 130
