"""The ``coach`` command: subcommands with help texts; errors print one clear line, no traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import tomli_w

from coach import __version__
from coach.config import DEFAULT_CONFIG_PATH, config_to_toml_dict, load_config
from coach.errors import CoachError, ConfigError
from coach.sources.replay import load_csv_session, summarize_block

Handler = Callable[[argparse.Namespace], int]


def _cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file, known_profiles=_known_profiles())
    print(f"# {args.file}: valid. Effective config:")
    print(tomli_w.dumps(config_to_toml_dict(config)), end="")
    return 0


def _known_profiles() -> set[str] | None:
    try:
        from coach.profiles import available_profiles
    except ImportError:
        return None
    return set(available_profiles())


def _cmd_replay(args: argparse.Namespace) -> int:
    session = load_csv_session(args.path)
    print(f"Session {args.path}")
    print(f"{'sensor':<12} {'samples':>8} {'duration s':>10} {'rate Hz':>8} {'gyro':>5} "
          f"{'gaps':>5} {'missing':>8}")
    for location in sorted(session.blocks, key=lambda loc: loc.value):
        s = summarize_block(session.blocks[location])
        print(f"{s.location.value:<12} {s.samples:>8} {s.duration_s:>10.2f} {s.rate_hz:>8.1f} "
              f"{'yes' if s.has_gyro else 'no':>5} {s.gaps:>5} {s.missing_samples:>8}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (also used to render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="coach",
        description="Real-time running-form coach: IMUs on the pelvis and shanks, foot contacts, "
        "pelvic drop and rotation, spoken cues.",
    )
    parser.add_argument("--version", action="version", version=f"coach {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = commands.add_parser("config", help="work with config files")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser(
        "check", help="validate a config file and print the effective config"
    )
    check.add_argument("file", type=Path, nargs="?", default=DEFAULT_CONFIG_PATH,
                       help="TOML config file (default: the bundled configs/default.toml)")
    check.set_defaults(handler=_cmd_config_check)

    replay = commands.add_parser(
        "replay", help="replay a recorded session through the pipeline"
    )
    replay.add_argument("path", type=Path, help="CSV session folder")
    replay.set_defaults(handler=_cmd_replay)
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
        return 130
