"""``coach replay`` and ``coach demo``: a recorded session through the pipeline, outputs to files."""

from __future__ import annotations

import argparse
import sys

from coach.config import CoachConfig
from coach.runtime import RunResult, replay_session
from coach.sinks.csv_out import write_cues, write_events, write_strides
from coach.sinks.summary import format_summary
from coach.sources.replay import load_csv_session, summarize_block


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


def run_replay(args: argparse.Namespace, config: CoachConfig) -> int:
    """Replay ``args.path`` and write the outputs the arguments ask for."""
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
    result = replay_session(config, session, progress=progress)
    progress.close()
    print()
    print(format_summary(result.strides, result.cues, result.duration_s))
    _write_outputs(args, result, config)
    return 0


def _write_outputs(args: argparse.Namespace, result: RunResult, config: CoachConfig) -> None:
    written = []
    if args.events_out:
        written.append(f"{write_events(args.events_out, result.events)} events -> {args.events_out}")
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
        cues = [(cue.play_at if cue.play_at is not None else cue.t, cue.phrase) for cue in result.cues]
        render_wav_track(cues, bank, result.duration_s, args.wav_out)
        written.append(f"speech track of the {len(cues)} cues -> {args.wav_out}")
    if written:
        print()
        print("\n".join(f"wrote {line}" for line in written))
