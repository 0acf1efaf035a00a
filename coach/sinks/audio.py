"""Playback: one persistent output device that plays speech clips from memory without blocking.

:class:`AudioOutput` opens one miniaudio playback device for the whole session, fed by a
generator running on the device's own thread with a short buffer (~10 ms). :meth:`~AudioOutput.play`
only appends the clip to a deque and returns; the device thread plays queued clips one after the
other (cues never talk over each other) and silence in between. Mono speech is written to both
channels, so both ears hear the same loudness.

With no sound card or sound server, a warning is logged once and miniaudio's NULL backend is
used: it consumes samples in real time, so timing and counters behave as with a real device.
``output="none"`` selects that null output directly. A device left open makes the process hang
at exit, so outputs are closed by :meth:`~AudioOutput.close`, by ``with``, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import miniaudio
import numpy as np
from numpy.typing import NDArray

from coach.config import AudioConfig
from coach.errors import AudioError
from coach.sinks.speech import PhraseBank, Speech, resample

log = logging.getLogger(__name__)

Output = Literal["device", "none"]

#: Device sample rate, Hz (espeak-ng renders at 22050 Hz, so no conversion is needed).
DEVICE_RATE_HZ = 22050
#: Output channels; mono speech is duplicated to every channel.
CHANNELS = 2
#: Device period, ms: the latency from play() to the device is at most about this.
BUFFER_MS = 10
#: Clips waiting to be played beyond this number drop the oldest waiting clip.
MAX_PENDING = 8
#: After a clip's last frame is handed over, this much more output (s) lets the device and
#: sound server play it out before the clip counts as finished.
DRAIN_S = 0.1
#: play() to first-frame latencies kept for statistics.
LATENCY_HISTORY = 10_000

_warned_no_device = False
_open_outputs: weakref.WeakSet[AudioOutput] = weakref.WeakSet()


@dataclass(slots=True)
class PlaybackStats:
    """Counters of one output, updated by the device thread (frames are per channel).

    Attributes:
        clips_played: clips whose last frame was handed to the device.
        clips_dropped: clips discarded unplayed because too many were waiting.
        frames_out: frames handed to the device, speech and silence.
        speech_frames: frames of clips handed to the device.
        callbacks: device callbacks served.
        errors: callbacks that failed and output silence instead.

    """

    clips_played: int = 0
    clips_dropped: int = 0
    frames_out: int = 0
    speech_frames: int = 0
    callbacks: int = 0
    errors: int = 0


class ClipHandle:
    """One clip handed to :meth:`AudioOutput.play`.

    Attributes:
        pcm: the samples played (device rate, volume applied), int16 mono.
        t_play: ``time.perf_counter()`` when play() was called, s.
        t_first_frame: ``time.perf_counter()`` when its first frame was handed to the device, s.
        started: set when the first frame was handed to the device.
        finished: set when the clip has been played out (or dropped, or the output closed).
        played: True when every frame was handed to the device.
        dropped: True when the clip was discarded unplayed.

    """

    __slots__ = ("dropped", "finished", "pcm", "played", "started", "t_first_frame", "t_play")

    def __init__(self, pcm: NDArray[np.int16], t_play: float) -> None:
        self.pcm = pcm
        self.t_play = t_play
        self.t_first_frame: float | None = None
        self.started = threading.Event()
        self.finished = threading.Event()
        self.played = False
        self.dropped = False

    @property
    def latency_s(self) -> float | None:
        """Time from play() to the first frame handed to the device, s (None before)."""
        if self.t_first_frame is None:
            return None
        return self.t_first_frame - self.t_play


class ClipQueue:
    """Clips waiting to be played and the one playing; turns them into device frames.

    :meth:`push` is called by any thread (deque appends are atomic), :meth:`fill` only by the
    device thread. Clips play one after the other, never mixed; silence fills the gaps.
    """

    def __init__(
        self, channels: int = CHANNELS, drain_frames: int = 0, max_pending: int = MAX_PENDING
    ) -> None:
        """Create an empty queue.

        Args:
            channels: frames' channel count; every channel gets the same mono signal.
            drain_frames: frames output after a clip's end before it counts as finished.
            max_pending: clips allowed to wait; beyond it the oldest waiting clip is dropped.

        """
        self.channels = channels
        self.drain_frames = drain_frames
        self.max_pending = max_pending
        self.stats = PlaybackStats()
        #: play() to first-frame latencies of the most recent clips, s.
        self.latencies_s: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.last: ClipHandle | None = None
        #: Set at the device's second callback: the first one pre-fills the buffer, and a sound
        #: server may take a second or two to start consuming it.
        self.ready = threading.Event()
        self._pending: deque[ClipHandle] = deque()
        self._current: ClipHandle | None = None
        self._pos = 0
        self._finishing: deque[tuple[int, ClipHandle]] = deque()
        self._push_lock = threading.Lock()

    def push(self, handle: ClipHandle) -> None:
        """Queue a clip; when too many wait, the oldest waiting one is dropped and counted."""
        with self._push_lock:  # only between pushers: the device thread never takes it
            while len(self._pending) >= self.max_pending:
                try:
                    old = self._pending.popleft()
                except IndexError:  # the device thread took it meanwhile
                    break
                old.dropped = True
                old.finished.set()
                self.stats.clips_dropped += 1
            self._pending.append(handle)
            self.last = handle

    def fill(self, frames: int) -> NDArray[np.int16]:
        """Return the next ``frames`` frames, shape (frames, channels) (device thread only)."""
        out = np.zeros((frames, self.channels), np.int16)
        stats = self.stats
        filled = 0
        now: float | None = None
        while filled < frames:
            clip = self._current
            if clip is None:
                try:
                    clip = self._pending.popleft()
                except IndexError:
                    break
                self._current, self._pos = clip, 0
                if now is None:
                    now = time.perf_counter()
                clip.t_first_frame = now
                self.latencies_s.append(now - clip.t_play)
                clip.started.set()
            n = min(frames - filled, clip.pcm.shape[0] - self._pos)
            out[filled : filled + n] = clip.pcm[self._pos : self._pos + n, None]
            filled += n
            self._pos += n
            stats.speech_frames += n
            if self._pos >= clip.pcm.shape[0]:
                self._current = None
                clip.played = True
                stats.clips_played += 1
                self._finishing.append((stats.frames_out + filled + self.drain_frames, clip))
        stats.frames_out += frames
        stats.callbacks += 1
        if stats.callbacks == 2:
            self.ready.set()
        while self._finishing and self._finishing[0][0] <= stats.frames_out:
            self._finishing.popleft()[1].finished.set()
        return out

    def release_all(self) -> None:
        """Mark every unfinished clip finished and forget it (after the device stopped)."""
        with self._push_lock:
            handles = [self._current, *self._pending, *(h for _, h in self._finishing)]
            self._pending.clear()
            self._finishing.clear()
            self._current = None
        for handle in handles:
            if handle is not None:
                handle.finished.set()


class AudioOutput:
    """A persistent playback device that plays queued speech clips from memory."""

    def __init__(
        self,
        output: Output = "device",
        *,
        rate_hz: int = DEVICE_RATE_HZ,
        channels: int = CHANNELS,
        buffer_ms: int = BUFFER_MS,
        volume: float = 1.0,
        max_pending: int = MAX_PENDING,
        app_name: str = "coach",
    ) -> None:
        """Open the output and start its device thread (silence until something is played).

        Args:
            output: ``"device"`` for the default sound device (null output when there is
                none), ``"none"`` for the null output.
            rate_hz: device sample rate, Hz.
            channels: device channels, each gets the same mono signal.
            buffer_ms: device period, ms.
            volume: gain applied to every clip, 0 to 1.
            max_pending: clips allowed to wait; beyond it the oldest waiting clip is dropped.
            app_name: name shown by the sound server.

        Raises:
            AudioError: not even the null output could be opened.

        """
        if not 0.0 <= volume <= 1.0:
            raise ValueError(f"volume must be within 0..1, got {volume}")
        self.output = output
        self.rate_hz = rate_hz
        self.channels = channels
        self.buffer_ms = buffer_ms
        self.volume = volume
        self.queue = ClipQueue(channels, round(DRAIN_S * rate_hz), max_pending)
        self._closed = False
        self._close_lock = threading.Lock()
        self._device: Any = self._open_device(app_name)
        #: Name of the miniaudio backend in use ("PulseAudio", "ALSA", "Null", ...).
        self.backend: str = str(self._device.backend)
        stream = self._stream()
        next(stream)
        try:
            self._device.start(stream)
        except miniaudio.MiniaudioError as error:
            self._device.close()
            raise AudioError(f"cannot start the audio output: {error}") from None
        _open_outputs.add(self)

    @classmethod
    def from_config(cls, audio: AudioConfig) -> AudioOutput:
        """Open the output chosen by ``audio`` (``output`` and ``volume``)."""
        return cls(audio.output, volume=audio.volume)

    @property
    def stats(self) -> PlaybackStats:
        """Counters of this output."""
        return self.queue.stats

    @property
    def latencies_s(self) -> deque[float]:
        """play() to first-frame-handed-to-the-device latencies of recent clips, s."""
        return self.queue.latencies_s

    @property
    def is_null(self) -> bool:
        """True when samples go nowhere (null output)."""
        return self.backend.lower() == "null"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> AudioOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def play(self, speech: Speech) -> ClipHandle:
        """Queue ``speech`` for playback and return at once (never waits for the device).

        The clip starts as soon as the clips queued before it have played. Rate conversion
        and volume are applied here, in the caller's thread (about 0.1 ms per second of
        speech); the device thread only copies samples.

        Raises:
            AudioError: the output is closed.

        """
        t_play = time.perf_counter()
        if self._closed:
            raise AudioError("the audio output is closed")
        pcm = speech.pcm
        if speech.rate_hz != self.rate_hz:
            pcm = resample(pcm, speech.rate_hz, self.rate_hz)
        if self.volume != 1.0:
            pcm = np.rint(pcm.astype(np.float32) * self.volume).astype(np.int16)
        handle = ClipHandle(pcm, t_play)
        self.queue.push(handle)
        if self._closed:  # closed meanwhile: nobody will play it
            self.queue.release_all()
        return handle

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until the device consumes samples steadily; False on timeout.

        A sound server can take a second or two to start a new stream (0.6-2 s measured with
        a PulseAudio null sink): a clip played before then waits as long. Call this at
        start-up to keep that delay off the first cue.
        """
        return self.queue.ready.wait(timeout_s)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until every clip played so far has finished; False on timeout."""
        last = self.queue.last
        return last is None or last.finished.wait(timeout_s)

    def close(self) -> None:
        """Stop and release the device (idempotent); unfinished clips are marked finished."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _open_outputs.discard(self)
        try:
            self._device.close()  # joins the device thread: no callback runs after this
        finally:
            self.queue.release_all()

    # -- device ------------------------------------------------------------------------------

    def _open_device(self, app_name: str) -> Any:
        """Open the sound device, or the NULL backend when there is none or none is wanted."""
        global _warned_no_device
        common: dict[str, Any] = {
            "output_format": miniaudio.SampleFormat.SIGNED16,
            "nchannels": self.channels,
            "sample_rate": self.rate_hz,
            "buffersize_msec": self.buffer_ms,
            "app_name": app_name,
        }
        if self.output == "device":
            try:
                with _quiet_stderr():  # ALSA prints pages of probing errors without a card
                    return miniaudio.PlaybackDevice(**common)
            except miniaudio.MiniaudioError as error:
                if not _warned_no_device:
                    _warned_no_device = True
                    log.warning(
                        "no sound device or sound server found (%s): cues will not be heard. "
                        'Set audio.output = "none" to run silently on purpose.',
                        error,
                    )
        try:
            return miniaudio.PlaybackDevice(backends=[miniaudio.Backend.NULL], **common)
        except miniaudio.MiniaudioError as error:
            raise AudioError(f"cannot open even the null audio output: {error}") from None

    def _stream(self) -> Generator[NDArray[np.int16], int, None]:
        """Feed the device: receives the number of frames wanted, yields that many frames."""
        queue = self.queue
        frames = yield np.zeros((0, self.channels), np.int16)
        while True:
            try:
                out = queue.fill(frames)
            except Exception:  # never let an error silence the device for good
                queue.stats.errors += 1
                if queue.stats.errors == 1:
                    log.exception("audio callback failed; playing silence")
                out = np.zeros((frames, self.channels), np.int16)
            frames = yield out


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C libraries' chatter) for the duration of the block."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@atexit.register
def _close_all() -> None:
    """Close outputs still open at interpreter exit (an open device hangs the process)."""
    for output in list(_open_outputs):
        with contextlib.suppress(Exception):
            output.close()


def say(
    phrase: str,
    audio: AudioConfig,
    cache_dir: Path | str | None = None,
    timeout_s: float | None = None,
) -> None:
    """Render ``phrase`` with the voice of ``audio``, play it and wait until it has played.

    Args:
        phrase: what to say.
        audio: voice, rate, volume and output.
        cache_dir: speech cache folder (default :func:`~coach.sinks.speech.default_cache_dir`).
        timeout_s: longest wait for playback, s (default: clip length + 5 s).

    Raises:
        AudioError: the phrase cannot be rendered, or playback did not finish in time.

    """
    speech = PhraseBank.from_config(audio, [phrase], cache_dir).get(phrase)
    limit = timeout_s if timeout_s is not None else speech.duration_s + 5.0
    with AudioOutput.from_config(audio) as output:
        handle = output.play(speech)
        if not handle.finished.wait(limit):
            raise AudioError(
                f"playback of {phrase!r} did not finish within {limit:.1f} s on the "
                f'{output.backend} output; check the sound device or set audio.output = "none"'
            )
