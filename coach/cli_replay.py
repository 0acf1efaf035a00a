"""``coach replay`` and ``coach demo``: a recorded session through the pipeline, outputs to files.

PATH is a CSV session folder or a raw ``.mcap`` recording. A recording is decoded as a live
run decodes it (one decoder per sensor, notifications in arrival order with their recorded host
times); the decoder counters per sensor and, for a cut-short file, a truncation warning are part
of the summary. Config: the ``--config`` file (bundled default without it); for a recording,
``--recorded-config`` uses the config stored in it instead.

``--speed 0`` (default) runs as fast as possible; ``--speed S`` > 0 paces the replay S times
real time: by the recorded receive times for a recording, by the sample times for a CSV folder.
Pacing (sleeping) happens here, in the CLI layer, never in the core.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from coach.config import CoachConfig
from coach.errors import CoachError
from coach.live import LiveOptions, paced_replay
from coach.runtime import (
    FAST_BLOCK_S,
    RunResult,
    recorded_sensor_specs,
    replay_blocks,
    sensor_specs,
)
from coach.sinks.csv_out import write_cues, write_events, write_strides
from coach.sinks.summary import format_summary
from coach.sources.replay import iter_blocks, load_csv_session, summarize_block
from coach.stream.core import SensorSpec
from coach.types import SampleBlock

#: Block length of a paced replay, s (about a BLE connection interval or two).
PACED_BLOCK_S = 0.05


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total_s: float, enabled: bool) -> None:
        self.total_s = max(total_s, 1e-9)
        self.enabled = enabled and sys.stderr.isatty()
        self._shown = -1

    def __call__(self, t: float) -> None:
        if not self.enabled:
            return
        percent = int(100 * min(t / self.total_s, 1.0))
        if percent != self._shown:
            self._shown = percent
            bar = "#" * (percent // 4)
            print(f"\rreplay [{bar:<25}] {percent:3d} %", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def _check_speed(args: argparse.Namespace) -> float:
    speed = float(getattr(args, "speed", 0.0) or 0.0)
    if not speed >= 0.0:
        raise CoachError(f"--speed {speed:g}: use 0 (as fast as possible), 1 (real pace) or > 0")
    return speed


def is_recording(path: Path) -> bool:
    """True when PATH names a raw recording file rather than a CSV session folder."""
    return path.suffix == ".mcap" or path.is_file()


def run_replay(args: argparse.Namespace, config: CoachConfig) -> int:
    """Replay ``args.path`` (CSV folder or .mcap recording) and write the outputs asked for."""
    if is_recording(Path(args.path)):
        return _replay_recording(args, config)
    speed = _check_speed(args)
    session = load_csv_session(args.path)
    print(f"Session {args.path}")
    for location in sorted(session.blocks, key=lambda loc: loc.value):
        s = summarize_block(session.blocks[location])
        print(
            f"  {s.location.value:<12} {s.samples:>7} samples  {s.duration_s:7.1f} s  "
            f"{s.rate_hz:6.1f} Hz  gyro {'yes' if s.has_gyro else 'no '}  "
            f"gaps {s.gaps} ({s.missing_samples} samples missing)"
        )
    total = max(float(b.t[-1]) for b in session.blocks.values())
    progress = _Progress(total, not getattr(args, "quiet", False))
    timed = (
        (float(b.t[-1]), b)
        for b in iter_blocks(session, FAST_BLOCK_S if speed == 0.0 else PACED_BLOCK_S)
    )
    result = _replay(args, config, sensor_specs(session), timed, speed, progress)
    progress.close()
    print()
    print(format_summary(result.strides, result.cues, result.duration_s))
    _write_outputs(args, result, config)
    return 0


def _replay_recording(args: argparse.Namespace, config: CoachConfig) -> int:
    from coach.cli_recording import (
        choose_config,
        format_decoder_stats,
        truncation_warning,
    )
    from coach.sources.recorded_session import RecordedSession
    from coach.sources.recording import open_recording

    speed = _check_speed(args)
    recording = open_recording(args.path)
    session = RecordedSession(recording)
    config, config_line = choose_config(args, recording, config)
    started = recording.start_time
    print(
        f"Recording {args.path}"
        + (f" (coach {recording.software_version})" if recording.software_version else "")
        + (f", started {started:%Y-%m-%d %H:%M:%S} UTC" if started is not None else "")
    )
    summary = recording.summary()
    for location, sensor in sorted(session.sensors.items(), key=lambda kv: kv[0].value):
        info = summary.get(location)
        span = ""
        if info is not None and info.first_host_time_s is not None:
            span = f"  {info.first_host_time_s:7.1f} .. {info.last_host_time_s or 0.0:7.1f} s"
        print(
            f"  {location.value:<12} {sensor.profile.name:<20} {sensor.rate_hz:g} Hz "
            f"({sensor.rate_source})  {info.packets if info else 0:>7} notifications{span}"
        )
    print(config_line)
    ends = [i.last_host_time_s for i in summary.values() if i.last_host_time_s is not None]
    progress = _Progress(max(ends, default=1.0), not getattr(args, "quiet", False))
    blocks = session.iter_blocks(FAST_BLOCK_S if speed == 0.0 else 0.0)
    result = _replay(args, config, recorded_sensor_specs(session), blocks, speed, progress)
    progress.close()
    print()
    print(format_summary(result.strides, result.cues, result.duration_s))
    print()
    print(format_decoder_stats(session))
    warning = truncation_warning(session, result.duration_s)
    if warning:
        print()
        print(warning)
    _write_outputs(args, result, config)
    return 0


def _replay(
    args: argparse.Namespace,
    config: CoachConfig,
    sensors: list[SensorSpec],
    timed: Iterable[tuple[float, SampleBlock]],
    speed: float,
    progress: _Progress,
) -> RunResult:
    """As fast as possible, or paced through the live sinks (speech, MQTT, live reload)."""
    if speed == 0.0:
        return replay_blocks(config, sensors, (block for _, block in timed), progress)
    options = LiveOptions(
        audio=getattr(args, "audio", "none") or "none",
        config_path=getattr(args, "config", None),
        view=True,
    )
    return asyncio.run(paced_replay(config, sensors, timed, speed, options)).run


def _write_outputs(args: argparse.Namespace, result: RunResult, config: CoachConfig) -> None:
    written = []
    if args.events_out:
        count = write_events(args.events_out, result.events)
        written.append(f"{count} events -> {args.events_out}")
    if args.strides_out:
        written.append(
            f"{write_strides(args.strides_out, result.strides)} strides -> {args.strides_out}"
        )
    if args.cues_out:
        written.append(f"{write_cues(args.cues_out, result.cues)} cues -> {args.cues_out}")
    if getattr(args, "wav_out", None):
        from coach.sinks.speech import PhraseBank, config_phrases
        from coach.sinks.wav_track import render_wav_track

        phrases = sorted(set(config_phrases(config.cues)) | {cue.phrase for cue in result.cues})
        bank = PhraseBank.from_config(config.audio, phrases)
        cues = [
            (cue.play_at if cue.play_at is not None else cue.t, cue.phrase) for cue in result.cues
        ]
        render_wav_track(cues, bank, result.duration_s, args.wav_out)
        written.append(f"speech track of the {len(cues)} cues -> {args.wav_out}")
    if written:
        print()
        print("\n".join(f"wrote {line}" for line in written))
