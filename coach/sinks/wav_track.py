"""Offline WAV track of a whole run: every cue's speech placed at its session time.

Built with numpy as fast as the machine allows (no real-time playback), for replays and
reports: listen to a session's cues at their times, or line them up with a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from coach.sinks.speech import Speech, write_wav


class SpeechSource(Protocol):
    """Anything that returns rendered speech for a phrase (e.g. a ``PhraseBank``)."""

    def get(self, phrase: str) -> Speech:
        """Return the speech of ``phrase``."""
        ...


def mix_track(
    cues: Sequence[tuple[float, str]],
    bank: SpeechSource,
    duration_s: float,
    rate_hz: int = 22050,
) -> NDArray[np.int16]:
    """Mix the cues into one mono int16 track of ``duration_s`` seconds.

    Args:
        cues: (session time s, phrase) pairs; speech starts at that time. Negative times
            start at 0; speech running past the end is cut.
        bank: source of each phrase's speech (resampled to ``rate_hz`` when needed).
        duration_s: length of the track, s.
        rate_hz: sample rate of the track, Hz.

    Returns:
        the track; overlapping speech is summed and clipped to the int16 range.

    """
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    n = round(duration_s * rate_hz)
    acc = np.zeros(n, np.int32)
    for t, phrase in cues:
        pcm = bank.get(phrase).resampled(rate_hz).pcm
        start = max(0, round(t * rate_hz))
        stop = min(n, start + pcm.shape[0])
        if stop > start:
            acc[start:stop] += pcm[: stop - start]
    return np.clip(acc, -32768, 32767).astype(np.int16)


def render_wav_track(
    cues: Sequence[tuple[float, str]],
    bank: SpeechSource,
    duration_s: float,
    out_path: Path | str,
    rate_hz: int = 22050,
) -> Path:
    """Write the cues of a run as one mono 16-bit WAV file (see :func:`mix_track`).

    Returns:
        the path written.

    """
    path = Path(out_path)
    write_wav(path, mix_track(cues, bank, duration_s, rate_hz), rate_hz)
    return path
