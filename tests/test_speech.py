"""Speech rendering through the real espeak-ng (pyttsx3 first, command line as fallback)."""

from __future__ import annotations

import logging
import shutil
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coach.config import CueRuleConfig, CuesConfig
from coach.errors import AudioError
from coach.sinks import speech as speech_mod
from coach.sinks.speech import (
    PhraseBank,
    Speech,
    config_phrases,
    default_cache_dir,
    resample,
    speech_problem,
    trim_silence,
)

DEFAULT_PHRASES = [
    "squeeze, relax, float",
    "quick feet",
    "light feet",
    "stand tall",
    "level hips",
    "relax your hips",
]

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)"
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="module")
def bank(cache_dir: Path) -> PhraseBank:
    bank = PhraseBank("en", 175, cache_dir)
    bank.render(DEFAULT_PHRASES)
    return bank


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


@pytest.mark.parametrize("phrase", DEFAULT_PHRASES)
def test_every_default_phrase_is_real_speech(bank: PhraseBank, phrase: str) -> None:
    speech = bank.get(phrase)
    assert speech.text == phrase
    assert speech.pcm.dtype == np.int16 and speech.pcm.ndim == 1
    assert speech.rate_hz == 22050
    assert 0.3 <= speech.duration_s <= 3.0
    assert np.abs(speech.pcm.astype(np.int32)).max() > 5000
    assert rms(speech.pcm) > 1000
    # Silence trimmed: speech within the first and last 50 ms.
    edge = int(0.05 * speech.rate_hz)
    assert np.abs(speech.pcm[:edge].astype(np.int32)).max() > 300
    assert np.abs(speech.pcm[-edge:].astype(np.int32)).max() > 300


def test_phrases_are_distinct_renderings(bank: PhraseBank) -> None:
    lengths = {bank.get(p).pcm.shape[0] for p in DEFAULT_PHRASES}
    assert len(lengths) == len(DEFAULT_PHRASES)  # no phrase got another's file
    assert bank.get("squeeze, relax, float").duration_s > bank.get("quick feet").duration_s


def test_first_render_synthesises_and_writes_cache(bank: PhraseBank, cache_dir: Path) -> None:
    assert bank.stats.rendered == len(DEFAULT_PHRASES)
    assert bank.stats.fallbacks == 0  # pyttsx3 worked; the CLI is only a fallback
    files = sorted(cache_dir.glob("*.wav"))
    assert len(files) == len(DEFAULT_PHRASES)
    with wave.open(str(files[0])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)


def test_second_render_hits_the_cache(bank: PhraseBank, cache_dir: Path) -> None:
    mtimes = {f: f.stat().st_mtime_ns for f in cache_dir.glob("*.wav")}

    def no_synthesis(*args: Any) -> Any:
        raise AssertionError("cache miss: rendered again")

    again = PhraseBank("en", 175, cache_dir)
    again._synthesise = no_synthesis  # type: ignore[method-assign]
    again.render(DEFAULT_PHRASES)
    assert again.stats.rendered == 0
    assert again.stats.cache_hits == len(DEFAULT_PHRASES)
    for phrase in DEFAULT_PHRASES:
        np.testing.assert_array_equal(again.get(phrase).pcm, bank.get(phrase).pcm)
    assert {f: f.stat().st_mtime_ns for f in cache_dir.glob("*.wav")} == mtimes
    # Rendering again into the same bank does nothing at all.
    again.render(DEFAULT_PHRASES)
    assert again.stats.cache_hits == len(DEFAULT_PHRASES)


def test_cache_key_includes_rate_and_voice(cache_dir: Path, bank: PhraseBank) -> None:
    faster = PhraseBank("en", 260, cache_dir)
    faster.render(["quick feet"])
    assert faster.stats.rendered == 1
    assert faster.get("quick feet").duration_s < bank.get("quick feet").duration_s
    american = PhraseBank("en-us", 175, cache_dir)
    american.render(["quick feet"])
    assert american.stats.rendered == 1


def test_rate_changes_between_renders_take_effect(tmp_path: Path) -> None:
    # espeak-ng applies parameters asynchronously; a stale rate once leaked into the next render.
    durations = {}
    for rate in (260, 120, 260, 175, 400, 80):
        bank = PhraseBank("en", rate, tmp_path / str(rate))
        bank.render(["quick feet"])
        durations[rate] = bank.get("quick feet").duration_s
    ordered = [durations[r] for r in sorted(durations)]
    assert ordered == sorted(ordered, reverse=True)  # faster speech is shorter
    assert durations[80] > 3 * durations[400]


def test_broken_cache_file_is_rendered_again(tmp_path: Path) -> None:
    first = PhraseBank("en", 175, tmp_path)
    first.render(["stand tall"])
    (file,) = tmp_path.glob("*.wav")
    file.write_bytes(file.read_bytes()[:100])  # truncated
    second = PhraseBank("en", 175, tmp_path)
    second.render(["stand tall"])
    assert second.stats.rendered == 1
    assert second.get("stand tall").duration_s > 0.3


def test_cli_fallback_when_pyttsx3_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(speech_mod, "_pyttsx3_engine", lambda: (None, "simulated failure"))
    bank = PhraseBank("en", 175, tmp_path)
    with caplog.at_level(logging.WARNING, logger="coach.sinks.speech"):
        bank.render(["level hips"])
    assert bank.stats.fallbacks == 1
    assert "espeak-ng command" in caplog.text
    speech = bank.get("level hips")
    assert speech_problem(speech, 175) is None
    assert 0.3 <= speech.duration_s <= 3.0


class FlakyEngine:
    """The real pyttsx3 engine, but the first render writes an empty WAV (a known failure)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.fail_next = True

    def configure(self, voice: str, rate_wpm: int) -> None:
        self.real.configure(voice, rate_wpm)

    def render(self, text: str, path: Path) -> None:
        self.real.render(text, path)
        if self.fail_next:
            self.fail_next = False
            with wave.open(str(path), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(22050)


def test_bad_pyttsx3_file_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, reason = speech_mod._pyttsx3_engine()
    assert real is not None, reason
    flaky = FlakyEngine(real)
    monkeypatch.setattr(speech_mod, "_pyttsx3_engine", lambda: (flaky, None))
    bank = PhraseBank("en", 175, tmp_path)
    bank.render(["light feet"])
    assert bank.stats.retries == 1
    assert bank.stats.fallbacks == 0
    assert speech_problem(bank.get("light feet"), 175) is None


def test_missing_espeak_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech_mod, "_pyttsx3_engine", lambda: (None, "no libespeak-ng"))
    monkeypatch.setattr(speech_mod.shutil, "which", lambda name: None)
    bank = PhraseBank("en", 175, tmp_path)
    with pytest.raises(AudioError, match="apt-get install espeak-ng"):
        bank.render(["quick feet"])


def test_unknown_voice_is_an_audio_error(tmp_path: Path) -> None:
    bank = PhraseBank("nosuchvoice", 175, tmp_path)
    with pytest.raises(AudioError, match=r"nosuchvoice.*espeak-ng --voices"):
        bank.render(["quick feet"])


def test_get_unknown_phrase(bank: PhraseBank) -> None:
    with pytest.raises(KeyError, match="not rendered"):
        bank.get("never rendered")
    assert "quick feet" in bank and "never rendered" not in bank


def test_speech_problem_catches_bad_renders() -> None:
    rng = np.random.default_rng(0)
    loud = (rng.standard_normal(22050) * 5000).astype(np.int16)
    assert speech_problem(Speech(loud[:11025], 22050, "quick feet"), 175) is None
    assert "empty" in str(speech_problem(Speech(loud[:0], 22050, "quick feet"), 175))
    quiet = (loud // 100).astype(np.int16)
    assert "silent" in str(speech_problem(Speech(quiet, 22050, "quick feet"), 175))
    assert "length" in str(speech_problem(Speech(loud[:500], 22050, "squeeze, relax, float"), 175))
    long = np.tile(loud, 8)
    assert "length" in str(speech_problem(Speech(long, 22050, "quick feet"), 175))


def test_trim_silence_keeps_short_pads() -> None:
    rate = 22050
    tone = (10000 * np.sin(2 * np.pi * 200 * np.arange(rate // 2) / rate)).astype(np.int16)
    pcm = np.concatenate([np.zeros(rate // 4, np.int16), tone, np.zeros(rate // 4, np.int16)])
    trimmed = trim_silence(pcm, rate)
    lead = round(speech_mod.LEAD_PAD_S * rate)
    tail = round(speech_mod.TAIL_PAD_S * rate)
    assert abs(trimmed.shape[0] - (tone.shape[0] + lead + tail)) <= 2 * rate // 200
    assert trim_silence(np.zeros(100, np.int16), rate).shape == (0,)


def test_resample_and_speech_resampled() -> None:
    pcm = (np.arange(22050) % 100 * 100).astype(np.int16)
    assert resample(pcm, 22050, 44100).shape == (44100,)
    assert resample(pcm, 22050, 16000).shape == (16000,)
    speech = Speech(pcm, 22050, "x")
    assert speech.resampled(22050) is speech
    assert speech.resampled(11025).rate_hz == 11025


def test_config_phrases_and_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rules = [
        CueRuleConfig(name="a", metric="cadence_spm", low=160, phrases=["quick feet", "x"]),
        CueRuleConfig(name="b", metric="pelvic_drop_deg", high=6, phrases=["quick feet", "y"]),
        CueRuleConfig(name="c", metric="pelvic_drop_deg", high=6, phrases=["z"], enabled=False),
    ]
    assert config_phrases(CuesConfig(rules=rules)) == ["quick feet", "x", "y"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "coach" / "speech"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "coach" / "speech"
