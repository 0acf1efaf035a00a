"""``coach tune``, ``coach baseline``, ``coach report``: from recorded sessions to a tuned config.

Each session is replayed through the core once (:func:`load_session`); a sweep then re-runs
only the cue engine per setting (:mod:`coach.tuning`).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from coach.athlete import (
    AthleteFile,
    MetricBaselineEntry,
    athlete_baseline,
    default_athlete_path,
    write_athlete_file,
)
from coach.config import CoachConfig, load_config
from coach.errors import CoachError
from coach.runtime import RunResult, replay_session
from coach.sources.replay import SensorSummary, load_csv_session, summarize_block
from coach.types import STRIDE_METRICS, Location, SampleBlock


class TuneArgumentError(CoachError):
    """A tune, baseline or report option is not usable."""

    exit_code = 2


class _Progress:
    """A one-line progress bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, label: str, total: float, enabled: bool = True) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.enabled = enabled and sys.stderr.isatty()
        self._shown = -1

    def __call__(self, done: float, total: float | None = None) -> None:
        if not self.enabled:
            return
        percent = int(100 * min(done / (total or self.total), 1.0))
        if percent != self._shown:
            self._shown = percent
            bar = "#" * (percent // 4)
            print(f"\r{self.label} [{bar:<25}] {percent:3d} %", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self._shown >= 0:
            print(file=sys.stderr)


@dataclass(frozen=True)
class LoadedSession:
    """A recorded session replayed once through the pipeline."""

    path: Path
    result: RunResult
    sensors: list[SensorSummary]


def load_session(config: CoachConfig, path: Path, show_progress: bool = True) -> LoadedSession:
    """Replay one session as fast as possible: a CSV session folder or a raw ``.mcap`` recording.

    The one place that opens sessions for tune, baseline and report.

    Raises:
        SessionFormatError: the path is not a readable session or recording.

    """
    from coach.cli_replay import is_recording

    if is_recording(path):
        return _load_recording(config, path, show_progress)
    session = load_csv_session(path)
    sensors = [summarize_block(b) for _, b in sorted(session.blocks.items(), key=lambda kv: kv[0])]
    total = max(float(b.t[-1]) for b in session.blocks.values())
    progress = _Progress(f"replay {path.name}", total, show_progress)
    result = replay_session(config, session, progress=progress)
    progress.close()
    return LoadedSession(path, result, sensors)


def _load_recording(config: CoachConfig, path: Path, show_progress: bool) -> LoadedSession:
    """Decode and replay a raw recording; sensor summaries from the decoded sample times."""
    from coach.runtime import FAST_BLOCK_S, recorded_sensor_specs, replay_blocks
    from coach.sources.recorded_session import RecordedSession
    from coach.sources.recording import open_recording

    recording = open_recording(path)
    session = RecordedSession(recording)
    ends = [i.last_host_time_s for i in recording.summary().values() if i.last_host_time_s]
    times: dict[Location, list[np.ndarray]] = {}
    gyro: dict[Location, bool] = {}

    def blocks() -> Iterator[SampleBlock]:
        for _host, block in session.iter_blocks(FAST_BLOCK_S):
            times.setdefault(block.location, []).append(block.t)
            gyro[block.location] = block.has_gyro
            yield block

    progress = _Progress(f"replay {path.name}", max(ends, default=1.0), show_progress)
    result = replay_blocks(config, recorded_sensor_specs(session), blocks(), progress)
    progress.close()
    sensors = []
    for location in sorted(times, key=lambda loc: loc.value):
        t = np.concatenate(times[location])
        none = np.broadcast_to(np.zeros(3), (t.size, 3))  # summaries need the times only
        block = SampleBlock(location, t, none, none if gyro[location] else None)
        sensors.append(summarize_block(block))
    return LoadedSession(path, result, sensors)


def _config(args: argparse.Namespace) -> CoachConfig:
    from coach.profiles import available_profiles

    return load_config(args.config, known_profiles=set(available_profiles()))


def _vary(text: str) -> Any:
    from coach.tuning import parse_vary

    try:
        return parse_vary(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# ------------------------------------------------------------------------------------- tune


def run_tune(args: argparse.Namespace) -> int:
    """``coach tune``: a sweep table (and CSV), or suggested thresholds with ``--suggest``."""
    from coach import tuning

    if not 0.0 < args.fraction <= 0.5:
        raise TuneArgumentError(f"--fraction must be in (0, 0.5], got {args.fraction}")
    config = _config(args)
    baseline = athlete_baseline(config)
    varies = list(args.vary or [])
    tuning.grid_configs(config.cues, varies)  # every setting validates before any replay
    show = not args.quiet
    sessions = []
    for path in args.paths:
        loaded = load_session(config, path, show)
        result = loaded.result
        sessions.append(tuning.SessionStrides(str(path), result.strides, result.duration_s))
        print(
            f"{path}: {result.duration_s:.1f} s, {len(result.strides)} strides, "
            f"{len(result.cues)} cues with the config as it is"
        )
    if args.suggest:
        suggestions = tuning.suggest(config.cues, sessions, args.fraction, baseline)
        print()
        print(tuning.suggestions_toml(suggestions, args.fraction), end="")
        return 0
    settings = tuning.grid(varies)
    progress = _Progress("sweep", len(settings), show and len(settings) > 1)
    rows = tuning.sweep(config.cues, sessions, varies, baseline, progress)
    progress.close()
    keys = [vary.key for vary in varies]
    shown = tuning.combine_sessions(rows) if len(sessions) > 1 else rows
    varied_rules = {vary.target for vary in varies}
    rules = None
    if varies and not args.all_rules and tuning.CUES_TARGET not in varied_rules:
        rules = sorted(varied_rules)
    print()
    title = f"{len(settings)} setting(s) x {len(sessions)} session(s)"
    print(title + (" (sums over sessions)" if len(sessions) > 1 else ""))
    print(tuning.format_sweep_table(shown, keys, rules))
    if args.csv:
        records = tuning.sweep_records(rows + (shown if len(sessions) > 1 else []), keys)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=[*keys, *tuning.SWEEP_COLUMNS])
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
        print(f"\nwrote {len(records)} rows -> {args.csv}")
    return 0


# --------------------------------------------------------------------------------- baseline


def run_baseline(args: argparse.Namespace) -> int:
    """``coach baseline``: the runner's mean and sd per metric, written to an athlete file."""
    from coach.tuning import steady_baseline

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.athlete):
        raise TuneArgumentError(
            f"--athlete {args.athlete!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    config = _config(args)
    out = args.out or default_athlete_path(args.athlete)
    results = [load_session(config, path, not args.quiet).result for path in args.paths]
    found = steady_baseline(
        [r.strides for r in results], STRIDE_METRICS, skip_first=args.skip_first
    )
    excluded = ", ".join(f"{k} {v}" for k, v in found.excluded.items())
    print(f"{found.strides_steady} steady strides of {found.strides_total} (left out: {excluded})")
    if not found.metrics:
        raise TuneArgumentError(
            "no metric had enough steady strides for a baseline; record a longer steady run"
        )
    print(f"\n{'metric':<26}{'mean':>10}{'sd':>10}{'n':>8}{'outliers':>10}")
    for metric, m in found.metrics.items():
        print(f"{metric:<26}{m.mean:>10.4g}{m.sd:>10.4g}{m.n:>8}{m.outliers:>10}")
    for metric, n in found.too_few.items():
        print(f"{metric:<26}  left out: only {n} steady values")
    athlete = AthleteFile(
        name=args.athlete,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        sources=[str(p) for p in args.paths],
        metrics={
            metric: MetricBaselineEntry(mean=m.mean, sd=m.sd, n=m.n)
            for metric, m in found.metrics.items()
        },
    )
    written = write_athlete_file(out, athlete)
    print(f"\nwrote {written}. Use it in the config:\n")
    print(f'[athlete]\nname = "{args.athlete}"\nathlete_file = "{written.as_posix()}"')
    return 0


# ----------------------------------------------------------------------------------- report


def run_report(args: argparse.Namespace) -> int:
    """``coach report``: one offline HTML file with plots and quality figures."""
    from coach.report import ReportData, render_report

    config = _config(args)
    loaded = load_session(config, args.path, not args.quiet)
    result = loaded.result
    data = ReportData(
        title=args.path.name or str(args.path),
        source=str(args.path),
        strides=result.strides,
        cues=result.cues,
        quality=result.quality,
        duration_s=result.duration_s,
        sensors=loaded.sensors,
        cues_config=config.cues,
        baseline=athlete_baseline(config),
        notes=[("config", str(args.config) if args.config else "bundled default")],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_report(data), encoding="utf-8")
    print(
        f"{args.path}: {result.duration_s:.1f} s, {len(result.strides)} strides, "
        f"{len(result.cues)} cues\nwrote {args.out}"
    )
    return 0


# ---------------------------------------------------------------------------------- parsers


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None,
        help="TOML config file (default: the bundled configs/default.toml)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_tuning_parsers(commands: Any) -> None:
    """Register ``coach tune``, ``coach baseline`` and ``coach report`` on ``commands``."""
    tune = commands.add_parser(
        "tune",
        help="sweep cue thresholds over recorded sessions, or suggest thresholds",
        description="Replays each session through the core once, then re-runs only the cue "
        "engine for every setting of the grid given by --vary (several --vary make a grid). "
        "Per setting, rule and side: cues, cues per minute, first cue time, time outside the "
        "band. Without --vary: the config as it is. With --suggest: per rule, the threshold "
        "that would have had about --fraction of the strides outside, as TOML to paste.",
    )
    tune.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="CSV session folder(s) or .mcap recording(s)",
    )
    tune.add_argument(
        "--vary", type=_vary, action="append", metavar="RULE.FIELD=START:STOP:STEP",
        help="values of a rule field (STOP included), e.g. pelvic_drop.high=5:9:0.5, or a list "
        "A,B,C; cues.FIELD varies [cues] itself (e.g. cues.min_gap_s=4,8,16). Repeatable",
    )  # fmt: skip
    tune.add_argument("--csv", type=Path, help="also write every row to this CSV file")
    tune.add_argument(
        "--all-rules", action="store_true",
        help="show every rule in the table, not only the varied ones",
    )  # fmt: skip
    tune.add_argument(
        "--suggest", action="store_true",
        help="print suggested thresholds (TOML [[cues.rules]] tables) instead of a sweep",
    )  # fmt: skip
    tune.add_argument(
        "--fraction", type=float, default=0.1,
        help="share of evaluated strides the suggested band leaves outside (default 0.1)",
    )  # fmt: skip
    _common(tune)
    tune.set_defaults(handler=run_tune)

    baseline = commands.add_parser(
        "baseline",
        help="measure a runner's own baseline (mean, sd per metric) into an athlete file",
        description="From steady running strides (quality-flagged strides, each session's "
        "first strides, walking steps and median/MAD outliers left out), the runner's mean "
        "and sd per metric, written to athletes/<name>.toml; refer to it with [athlete] "
        "athlete_file for rules with band = 'baseline'.",
    )
    baseline.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="CSV session folder(s) or .mcap recording(s)",
    )
    baseline.add_argument("--athlete", required=True, help="athlete name (letters, digits, _ . -)")
    baseline.add_argument(
        "--out", type=Path, help="athlete file to write (default athletes/<name>.toml)"
    )
    baseline.add_argument(
        "--skip-first", type=int, default=30,
        help="strides left out at the start of each session (default 30)",
    )  # fmt: skip
    _common(baseline)
    baseline.set_defaults(handler=run_baseline)

    report = commands.add_parser(
        "report",
        help="write a one-file offline HTML report of a session (plots, quality, cues)",
    )
    report.add_argument(
        "path", type=Path, metavar="PATH", help="CSV session folder or .mcap recording"
    )
    report.add_argument(
        "--out", type=Path, default=Path("report.html"),
        help="HTML file to write (default report.html)",
    )  # fmt: skip
    _common(report)
    report.set_defaults(handler=run_report)
