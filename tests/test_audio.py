"""Playback (clip queue, null device, PulseAudio null sink) and the offline WAV track."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import miniaudio
import numpy as np
import pytest
from scipy import signal

from coach.config import AudioConfig
from coach.errors import AudioError
from coach.sinks import audio as audio_mod
from coach.sinks.audio import AudioOutput, ClipHandle, ClipQueue, say
from coach.sinks.speech import PhraseBank, Speech
from coach.sinks.wav_track import mix_track, render_wav_track

RATE = 22050
WAIT_S = 10.0  # upper bound for waits on events; never reached when things work

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)"
)


def tone(
    duration_s: float, rate: int = RATE, amplitude: float = 8000.0, hz: float = 300.0
) -> Speech:
    t = np.arange(round(duration_s * rate)) / rate
    return Speech((amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16), rate, "tone")


def handle(pcm: np.ndarray) -> ClipHandle:
    return ClipHandle(pcm.astype(np.int16), 0.0)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> PhraseBank:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    bank = PhraseBank("en", 175, tmp_path_factory.mktemp("speech"))
    bank.render(["quick feet", "stand tall", "squeeze, relax, float"])
    return bank


# -- clip queue (no device) ------------------------------------------------------------------


def drain(queue: ClipQueue, frames: int, block: int = 64) -> np.ndarray:
    chunks = [queue.fill(block) for _ in range(-(-frames // block))]
    return np.concatenate(chunks)


def test_queue_plays_clips_in_order_on_both_channels() -> None:
    queue = ClipQueue(channels=2)
    a, b = handle(np.arange(1, 101)), handle(-np.arange(1, 51))
    queue.push(a)
    queue.push(b)
    out = drain(queue, 256)
    assert out.shape == (256, 2) and out.dtype == np.int16
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # same loudness on both ears
    np.testing.assert_array_equal(out[:100, 0], np.arange(1, 101))
    np.testing.assert_array_equal(out[100:150, 0], -np.arange(1, 51))
    assert not out[150:].any()
    assert queue.stats.speech_frames == 150 and queue.stats.clips_played == 2
    assert queue.stats.frames_out == 256
    assert a.started.is_set() and b.started.is_set() and a.played and b.played
    assert a.t_first_frame is not None and b.t_first_frame is not None
    assert b.t_first_frame >= a.t_first_frame
    assert len(queue.latencies_s) == 2


def test_queue_finishes_a_clip_after_the_drain() -> None:
    queue = ClipQueue(channels=1, drain_frames=30)
    clip = handle(np.ones(100))
    queue.push(clip)
    queue.fill(64)
    assert not queue.ready.is_set()  # the first callback only pre-fills the buffer
    queue.fill(64)  # last frame handed at frame 100, drain needs 130
    assert queue.ready.is_set()
    assert clip.played and not clip.finished.is_set()
    queue.fill(64)
    assert clip.finished.is_set()


def test_queue_drops_the_oldest_waiting_clip() -> None:
    queue = ClipQueue(channels=1, max_pending=2)
    clips = [handle(np.ones(10)) for _ in range(3)]
    for clip in clips:
        queue.push(clip)
    assert clips[0].dropped and clips[0].finished.is_set()
    assert queue.stats.clips_dropped == 1
    drain(queue, 64)
    assert not clips[0].played and clips[1].played and clips[2].played


def test_queue_empty_clip_and_release() -> None:
    queue = ClipQueue(channels=1)
    empty, waiting = handle(np.zeros(0)), handle(np.ones(1000))
    queue.push(empty)
    queue.fill(16)
    assert empty.played and empty.finished.is_set()
    queue.push(waiting)
    queue.fill(16)
    queue.release_all()
    assert waiting.finished.is_set() and not waiting.played


# -- null output -----------------------------------------------------------------------------


@needs_espeak
def test_null_output_consumes_the_samples(bank: PhraseBank) -> None:
    speech = bank.get("quick feet")
    with AudioOutput("none") as output:
        assert output.is_null and output.backend == "Null"
        played = output.play(speech)
        assert played.finished.wait(WAIT_S)
        stats = output.stats
        assert played.played and not played.dropped
        assert stats.clips_played == 1
        assert stats.speech_frames == speech.pcm.shape[0]
        assert stats.frames_out >= speech.pcm.shape[0]
        assert played.latency_s is not None and played.latency_s >= 0.0
        assert list(output.latencies_s) == [played.latency_s]
    assert output.closed


@needs_espeak
def test_null_output_plays_queued_clips_back_to_back(bank: PhraseBank) -> None:
    with AudioOutput("none") as output:
        clips = [output.play(bank.get(p)) for p in ("quick feet", "stand tall")]
        assert output.wait_idle(WAIT_S)
        assert all(c.played for c in clips)
        first, second = (c.t_first_frame for c in clips)
        assert first is not None and second is not None and second > first
        total = sum(bank.get(p).pcm.shape[0] for p in ("quick feet", "stand tall"))
        assert output.stats.speech_frames == total


def test_output_closes_and_refuses_to_play() -> None:
    output = AudioOutput("none")
    long = output.play(tone(30.0))
    output.close()
    output.close()  # idempotent
    assert output.closed
    assert long.finished.is_set() and not long.played  # waiters are released
    with pytest.raises(AudioError, match="closed"):
        output.play(tone(0.1))


def test_volume_and_rate_conversion_happen_in_play() -> None:
    with AudioOutput("none", volume=0.5) as output:
        half_rate = tone(0.5, rate=11025, amplitude=10000)
        clip = output.play(half_rate)
        assert clip.pcm.shape[0] == 2 * half_rate.pcm.shape[0]
        assert 4900 <= np.abs(clip.pcm.astype(np.int32)).max() <= 5000
        assert clip.finished.wait(WAIT_S)


def test_no_sound_card_falls_back_to_null_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = miniaudio.PlaybackDevice

    def no_card(*args: Any, backends: Any = None, **kwargs: Any) -> Any:
        if not backends or miniaudio.Backend.NULL not in backends:
            raise miniaudio.MiniaudioError("failed to init device", -401)
        return real(*args, backends=backends, **kwargs)

    monkeypatch.setattr(miniaudio, "PlaybackDevice", no_card)
    monkeypatch.setattr(audio_mod, "_warned_no_device", False)
    with caplog.at_level(logging.WARNING, logger="coach.sinks.audio"):
        for _ in range(2):
            with AudioOutput("device") as output:
                assert output.is_null
                assert output.play(tone(0.05)).finished.wait(WAIT_S)
    warnings = [r for r in caplog.records if "no sound device" in r.getMessage()]
    assert len(warnings) == 1


def test_process_exits_with_an_output_left_open() -> None:
    # An open miniaudio device hangs the interpreter at exit; the atexit hook must close it.
    code = (
        "import numpy as np\n"
        "from coach.sinks.audio import AudioOutput\n"
        "from coach.sinks.speech import Speech\n"
        "o = AudioOutput('none')\n"
        "o.play(Speech(np.ones(22050 * 5, np.int16), 22050))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


@needs_espeak
def test_say_renders_plays_and_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs: list[AudioOutput] = []

    class Recording(AudioOutput):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            outputs.append(self)

    monkeypatch.setattr(audio_mod, "AudioOutput", Recording)
    say("light feet", AudioConfig(output="none"), cache_dir=tmp_path)
    (output,) = outputs
    assert output.closed
    assert output.stats.clips_played == 1
    assert output.stats.speech_frames > 0.3 * RATE
    # The clip and its drain were output before say() returned.
    assert output.stats.frames_out >= output.stats.speech_frames + round(audio_mod.DRAIN_S * RATE)
    assert len(list(tmp_path.glob("*.wav"))) == 1


# -- PulseAudio null sink: hear what really played --------------------------------------------


@pytest.fixture(scope="module")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PulseAudio daemon with a null sink ``coach_null``; yields its server string."""
    if shutil.which("pulseaudio") is None or shutil.which("parec") is None:
        pytest.skip("pulseaudio not installed (apt-get install pulseaudio pulseaudio-utils)")
    home = tmp_path_factory.mktemp("pulse")
    socket = home / "native"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PULSE_RUNTIME_PATH": str(home / "run"),
    }
    cmd = [
        "pulseaudio", "-D", "-n", "--exit-idle-time=-1", "--use-pid-file=yes",
        "--disable-shm=yes", f"--log-target=file:{home / 'log'}",
        "-L", "module-null-sink sink_name=coach_null",
        "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1",
    ]  # fmt: skip
    # -D returns once the daemon is initialised (or failed).
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    if started.returncode != 0 or not socket.exists():
        pytest.skip(f"pulseaudio did not start: {started.stderr.strip()[-300:]}")
    pid = int((home / "run" / "pid").read_text().split()[0])
    try:
        yield f"unix:{socket}"
    finally:
        os.kill(pid, 15)


class Recorder:
    """``parec`` on the null sink's monitor, read by a thread; counts bytes as they come."""

    def __init__(self, server: str) -> None:
        self.proc = subprocess.Popen(
            ["parec", f"--server={server}", "--device=coach_null.monitor", "--raw",
             "--format=s16le", f"--rate={RATE}", "--channels=2", "--latency-msec=20"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        self.chunks: list[bytes] = []
        self.total = 0
        self.target = 1
        self.reached = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(8192):
            self.chunks.append(chunk)
            self.total += len(chunk)
            if self.total >= self.target:
                self.reached.set()

    def wait_bytes(self, total: int) -> bool:
        self.target = total
        self.reached.clear()
        if self.total >= total:
            return True
        return self.reached.wait(WAIT_S)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(WAIT_S)
        self.thread.join(WAIT_S)
        data = b"".join(self.chunks)
        return np.frombuffer(data[: len(data) // 4 * 4], "<i2").reshape(-1, 2)


@needs_espeak
def test_pulseaudio_null_sink_hears_the_cue(
    pulse_server: str, bank: PhraseBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULSE_SERVER", pulse_server)
    speech = bank.get("squeeze, relax, float")
    recorder = Recorder(pulse_server)
    try:
        assert recorder.wait_bytes(1), "parec delivered nothing"
        with AudioOutput("device") as output:
            assert output.backend == "PulseAudio"
            start = recorder.total
            played = output.play(speech)
            assert played.finished.wait(WAIT_S)
            # Capture the clip's length plus half a second after it, counted in bytes.
            assert recorder.wait_bytes(start + 4 * (speech.pcm.shape[0] + RATE // 2))
    finally:
        captured = recorder.stop()
    left, right = captured[:, 0].astype(np.int32), captured[:, 1].astype(np.int32)
    assert np.abs(left - right).max() <= 2  # both ears the same
    loud = np.flatnonzero(np.abs(left) > 300)
    assert loud.size, "nothing audible was captured"
    heard_s = (loud[-1] - loud[0]) / RATE
    assert abs(heard_s - speech.duration_s) < 0.1
    # The captured signal is the clip (after the server's resampling): high correlation.
    ref = speech.pcm.astype(np.float64)
    corr = signal.correlate(left.astype(np.float64), ref, mode="valid", method="fft")
    norm = np.sqrt(np.sum(ref**2) * np.sum(left.astype(np.float64) ** 2))
    assert corr.max() / norm > 0.9
    assert 0.5 < rms(left[loud[0] : loud[-1]]) / rms(speech.pcm) < 1.5


# -- offline WAV track ------------------------------------------------------------------------


@needs_espeak
def test_wav_track_places_speech_at_cue_times(bank: PhraseBank, tmp_path: Path) -> None:
    cues = [(1.0, "quick feet"), (4.0, "stand tall"), (7.5, "squeeze, relax, float")]
    path = render_wav_track(cues, bank, 10.0, tmp_path / "cues.wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        track = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert track.shape[0] == 10 * RATE
    speaking = np.zeros(track.shape[0], bool)
    for t, phrase in cues:
        speech = bank.get(phrase)
        start = round(t * RATE)
        window = track[start : start + speech.pcm.shape[0]]
        assert rms(window) > 1000
        np.testing.assert_array_equal(window[: 2 * RATE // 10], speech.pcm[: 2 * RATE // 10])
        speaking[start : start + speech.pcm.shape[0]] = True
    assert not track[~speaking].any()  # silence everywhere else
    # The last cue runs past the end: it is cut, not dropped.
    assert 7.5 + bank.get("squeeze, relax, float").duration_s > 10.0 - 1.0


def test_wav_track_mixes_overlaps_with_clipping() -> None:
    class Tones:
        def get(self, phrase: str) -> Speech:
            return tone(1.0, amplitude=30000, hz=5.0) if phrase == "loud" else tone(0.5, 11025)

    track = mix_track(
        [(0.0, "loud"), (0.0, "loud"), (-0.2, "half-rate"), (3.9, "loud")], Tones(), 4.0
    )
    assert track.shape == (4 * RATE,)
    assert track.max() == 32767 and track.min() == -32768  # clipped, not wrapped around
    assert not track[RATE + 10 : round(3.9 * RATE)].any()
    assert track[round(3.9 * RATE) + 1000] != 0
    with pytest.raises(ValueError):
        mix_track([], Tones(), -1.0)
