"""Speech rendering: each cue phrase rendered once with espeak-ng, verified, cached, in memory.

pyttsx3's espeak driver is fragile (design.md section 5): only the last ``save_to_file`` before
``runAndWait`` is rendered, ``runAndWait`` may return before the file exists, property changes can
give empty files and concurrent renders give wrong files. So phrases are rendered one per
``runAndWait`` under a process-wide lock, each WAV is waited for, checked (complete, non-silent,
plausible length for the text) and retried; only when pyttsx3 keeps failing is the ``espeak-ng``
command line used, with a logged warning.

The trimmed PCM (int16 mono) is cached on disk as WAV files keyed by a hash of phrase, voice, rate
and engine versions, so later start-ups read files instead of rendering.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from coach.config import AudioConfig, CuesConfig
from coach.errors import AudioError

log = logging.getLogger(__name__)

Int16Array = NDArray[np.int16]

#: Bump when the stored PCM changes meaning (trimming, format), to invalidate old cache files.
CACHE_FORMAT = 1
#: Attempts with pyttsx3 per phrase before the command-line fallback.
PYTTSX3_ATTEMPTS = 3
#: How long to wait for pyttsx3's WAV file to appear complete after ``runAndWait``, s.
FILE_WAIT_S = 1.0
#: Silence kept before the first and after the last loud sample when trimming, s.
LEAD_PAD_S = 0.010
TAIL_PAD_S = 0.030
#: A sample is "loud" above this fraction of the clip's peak (and above an absolute floor).
TRIM_RELATIVE = 0.02
TRIM_FLOOR = 100
#: A clip whose peak stays below this (int16 full scale 32767) counts as silent.
SILENT_PEAK = 1000

INSTALL_HINT = "apt-get install espeak-ng libespeak-ng1"

# espeak-ng keeps global state: every use of it in this process goes through this lock.
_RENDER_LOCK = threading.Lock()
_ENGINE: Pyttsx3Espeak | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Speech:
    """One rendered phrase.

    Attributes:
        pcm: mono samples, int16, shape (n,).
        rate_hz: sample rate, Hz.
        text: the phrase.

    """

    pcm: Int16Array
    rate_hz: int
    text: str = ""

    @property
    def duration_s(self) -> float:
        """Length of the clip, s."""
        return float(self.pcm.shape[0]) / self.rate_hz

    def resampled(self, rate_hz: int) -> Speech:
        """Return the same speech at another sample rate (linear interpolation)."""
        if rate_hz == self.rate_hz:
            return self
        return Speech(resample(self.pcm, self.rate_hz, rate_hz), rate_hz, self.text)


@dataclass(slots=True)
class RenderStats:
    """What :meth:`PhraseBank.render` did, cumulated over calls.

    Attributes:
        rendered: phrases synthesised (pyttsx3 or fallback), i.e. cache misses.
        cache_hits: phrases read from the disk cache.
        retries: pyttsx3 attempts that gave a bad file and were repeated.
        fallbacks: phrases rendered by the ``espeak-ng`` command line.

    """

    rendered: int = 0
    cache_hits: int = 0
    retries: int = 0
    fallbacks: int = 0


def resample(pcm: Int16Array, from_hz: int, to_hz: int) -> Int16Array:
    """Resample int16 mono PCM by linear interpolation (good enough for speech cues)."""
    n_out = round(pcm.shape[0] * to_hz / from_hz)
    if n_out == 0 or pcm.shape[0] == 0:
        return np.zeros(0, np.int16)
    t_out = np.arange(n_out) * (from_hz / to_hz)
    out = np.interp(t_out, np.arange(pcm.shape[0]), pcm.astype(np.float64))
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/coach/speech``, or ``~/.cache/coach/speech``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coach" / "speech"


def config_phrases(cues: CuesConfig) -> list[str]:
    """Every phrase of the enabled cue rules, in config order, without duplicates."""
    seen: dict[str, None] = {}
    for rule in cues.rules:
        if rule.enabled:
            for phrase in rule.phrases:
                seen.setdefault(phrase, None)
    return list(seen)


def trim_silence(pcm: Int16Array, rate_hz: int) -> Int16Array:
    """Cut leading and trailing silence, keeping :data:`LEAD_PAD_S` / :data:`TAIL_PAD_S`."""
    if pcm.shape[0] == 0:
        return pcm
    magnitude = np.abs(pcm.astype(np.int32))
    threshold = max(TRIM_FLOOR, int(magnitude.max() * TRIM_RELATIVE))
    loud = np.flatnonzero(magnitude > threshold)
    if loud.shape[0] == 0:
        return pcm[:0]
    start = max(0, int(loud[0]) - round(LEAD_PAD_S * rate_hz))
    stop = min(pcm.shape[0], int(loud[-1]) + 1 + round(TAIL_PAD_S * rate_hz))
    return pcm[start:stop].copy()


def plausible_duration_s(text: str, rate_wpm: int) -> tuple[float, float]:
    """Range of speech durations (s, silence trimmed) that is believable for ``text``.

    espeak-ng speaks about ``rate_wpm`` words of ~6 characters per minute; punctuation adds
    pauses. The range is wide on purpose: it catches empty, truncated and wrong-phrase files.
    """
    chars_per_s = rate_wpm * 6.0 / 60.0
    expected = max(1, len(text.strip())) / chars_per_s
    pauses = sum(text.count(c) for c in ",.;:!?")
    return 0.25 * expected, 3.0 * expected + 0.4 * pauses + 1.0


def speech_problem(speech: Speech, rate_wpm: int) -> str | None:
    """Why ``speech`` (already trimmed) is not a believable rendering of its text, or None."""
    if speech.pcm.shape[0] == 0:
        return "empty or silent audio"
    peak = int(np.abs(speech.pcm.astype(np.int32)).max())
    if peak < SILENT_PEAK:
        return f"silent audio (peak {peak})"
    low, high = plausible_duration_s(speech.text, rate_wpm)
    if not low <= speech.duration_s <= high:
        return f"implausible length {speech.duration_s:.2f} s (expected {low:.2f}-{high:.2f} s)"
    return None


def read_wav(path: Path) -> tuple[Int16Array, int]:
    """Read the samples and rate of a complete mono 16-bit WAV file.

    Raises:
        ValueError: the file is missing, incomplete or not mono 16-bit PCM.

    """
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise ValueError(
                    f"not mono 16-bit ({wav.getnchannels()} ch, {8 * wav.getsampwidth()} bit)"
                )
            n = wav.getnframes()
            rate = wav.getframerate()
            data = wav.readframes(n)
    except (OSError, EOFError, wave.Error) as error:
        raise ValueError(f"unreadable WAV: {error}") from None
    if len(data) != 2 * n or size < 44 + 2 * n:
        raise ValueError(f"incomplete WAV ({len(data)} of {2 * n} bytes)")
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def write_wav(path: Path, pcm: Int16Array, rate_hz: int) -> None:
    """Write mono 16-bit PCM atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".wav.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate_hz)
            wav.writeframes(pcm.astype("<i2").tobytes())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def espeak_version() -> str:
    """Version of the espeak-ng library (or command line).

    Raises:
        AudioError: espeak-ng is not installed.

    """
    with contextlib.suppress(OSError, AttributeError):
        lib = ctypes.CDLL("libespeak-ng.so.1")
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        version = lib.espeak_Info(None)
        if version:
            return str(version.decode())
    exe = shutil.which("espeak-ng")
    if exe is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            # "eSpeak NG text-to-speech: 1.51  Data at: ..."
            return out.split(":", 1)[-1].split()[0]
    raise AudioError(f"espeak-ng is not installed: {INSTALL_HINT}")


def engine_id() -> str:
    """Identity of the speech engine, part of every cache key."""
    try:
        pyttsx3_version = importlib.metadata.version("pyttsx3")
    except importlib.metadata.PackageNotFoundError:
        pyttsx3_version = "none"
    return f"espeak-ng {espeak_version()} / pyttsx3 {pyttsx3_version}"


def cache_key(phrase: str, voice: str, rate_wpm: int, engine: str) -> str:
    """Hex digest naming the cache file of one rendering."""
    fields = {"f": CACHE_FORMAT, "p": phrase, "v": voice, "r": rate_wpm, "e": engine}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class PhraseBank:
    """Rendered phrases of one voice and rate, in memory, backed by a disk cache.

    Usage: ``bank = PhraseBank("en", 175); bank.render(phrases); bank.get("quick feet")``.
    Render at start-up, before the run: rendering takes ~10 ms per phrase on a cache miss.
    """

    def __init__(
        self,
        voice: str = "en",
        rate_wpm: int = 175,
        cache_dir: Path | str | None = None,
        use_cache: bool = True,
    ) -> None:
        """Create an empty bank.

        Args:
            voice: espeak-ng voice name (``espeak-ng --voices`` lists them).
            rate_wpm: speaking rate, words per minute.
            cache_dir: folder of cached WAVs; :func:`default_cache_dir` when None.
            use_cache: read and write the disk cache.

        """
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self.stats = RenderStats()
        self._speech: dict[str, Speech] = {}
        self._engine_id: str | None = None

    @classmethod
    def from_config(
        cls, audio: AudioConfig, phrases: Iterable[str], cache_dir: Path | str | None = None
    ) -> PhraseBank:
        """Create a bank with the voice and rate of ``audio`` and render ``phrases``."""
        bank = cls(audio.voice, audio.rate_wpm, cache_dir)
        bank.render(phrases)
        return bank

    def __contains__(self, phrase: object) -> bool:
        return phrase in self._speech

    def __len__(self) -> int:
        return len(self._speech)

    @property
    def phrases(self) -> list[str]:
        """Phrases held in memory."""
        return list(self._speech)

    def get(self, phrase: str) -> Speech:
        """Return the rendered speech of ``phrase``.

        Raises:
            KeyError: the phrase was not rendered.

        """
        try:
            return self._speech[phrase]
        except KeyError:
            raise KeyError(f"phrase not rendered: {phrase!r}") from None

    def render(self, phrases: Iterable[str]) -> None:
        """Make every phrase available to :meth:`get` (cache or synthesis), verified.

        Raises:
            AudioError: espeak-ng is missing, the voice is unknown, or a phrase cannot be
                rendered believably.

        """
        wanted = [p for p in dict.fromkeys(phrases) if p not in self._speech]
        if not wanted:
            return
        if self._engine_id is None:
            self._engine_id = engine_id()
        missing: list[str] = []
        for phrase in wanted:
            cached = self._load_cached(phrase)
            if cached is None:
                missing.append(phrase)
            else:
                self._speech[phrase] = cached
                self.stats.cache_hits += 1
        if missing:
            with tempfile.TemporaryDirectory(prefix="coach-speech-") as tmp:
                rendered = self._synthesise(missing, Path(tmp))
                for phrase, speech in zip(missing, rendered, strict=True):
                    self._speech[phrase] = speech
                    self.stats.rendered += 1
                    self._store(phrase, speech)

    # -- disk cache -------------------------------------------------------------------------

    def _cache_path(self, phrase: str) -> Path:
        assert self._engine_id is not None
        key = cache_key(phrase, self.voice, self.rate_wpm, self._engine_id)
        return self.cache_dir / f"{key}.wav"

    def _load_cached(self, phrase: str) -> Speech | None:
        if not self.use_cache:
            return None
        path = self._cache_path(phrase)
        if not path.exists():
            return None
        try:
            pcm, rate = read_wav(path)
        except ValueError as error:
            log.warning("ignoring broken speech cache file %s: %s", path, error)
            return None
        speech = Speech(pcm, rate, phrase)
        if speech_problem(speech, self.rate_wpm) is not None:
            return None
        return speech

    def _store(self, phrase: str, speech: Speech) -> None:
        if not self.use_cache:
            return
        try:
            write_wav(self._cache_path(phrase), speech.pcm, speech.rate_hz)
        except OSError as error:
            log.warning("cannot write the speech cache in %s: %s", self.cache_dir, error)

    # -- synthesis ---------------------------------------------------------------------------

    def _synthesise(self, phrases: list[str], tmp: Path) -> list[Speech]:
        """Render ``phrases`` in order; pyttsx3 first, the command line as a logged fallback."""
        out: list[Speech] = []
        with _RENDER_LOCK:
            engine, why = _pyttsx3_engine()
            if engine is None:
                log.warning("pyttsx3 unavailable (%s); rendering with the espeak-ng command", why)
            for i, phrase in enumerate(phrases):
                speech, problem = None, why
                if engine is not None:
                    speech, problem = self._pyttsx3_render(engine, phrase, tmp / f"p{i}.wav")
                if speech is None:
                    if engine is not None:
                        log.warning(
                            "pyttsx3 failed to render %r (%s); using the espeak-ng command",
                            phrase,
                            problem,
                        )
                    speech = self._cli_render(phrase, tmp / f"c{i}.wav")
                    self.stats.fallbacks += 1
                out.append(speech)
        return out

    def _pyttsx3_render(
        self, engine: Pyttsx3Espeak, phrase: str, path: Path
    ) -> tuple[Speech | None, str | None]:
        """Try pyttsx3 up to :data:`PYTTSX3_ATTEMPTS` times: (speech, None) or (None, problem)."""
        problem: str | None = None
        for attempt in range(PYTTSX3_ATTEMPTS):
            if attempt:
                self.stats.retries += 1
                log.debug("retrying %r after: %s", phrase, problem)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            try:
                # Set before every render: a retry must not inherit a bad state.
                engine.configure(self.voice, self.rate_wpm)
            except RuntimeError as error:
                problem = str(error)
                continue
            except ValueError as error:
                # espeak refused the voice: retrying will not help; the command-line
                # fallback reports it with a clear message.
                return None, f"voice {self.voice!r} rejected: {error}"
            try:
                engine.render(phrase, path)
            except Exception as error:  # anything pyttsx3 raises: try again
                problem = f"{type(error).__name__}: {error}"
                continue
            speech, problem = _wait_for_wav(path, phrase)
            if speech is not None:
                problem = speech_problem(speech, self.rate_wpm)
                if problem is None:
                    return speech, None
        return None, problem

    def _cli_render(self, phrase: str, path: Path) -> Speech:
        """Render with ``espeak-ng -w``; raises AudioError with what to do on failure."""
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise AudioError(
                f"cannot render {phrase!r}: pyttsx3 failed and the espeak-ng command is not "
                f"installed: {INSTALL_HINT}"
            )
        cmd = [exe, "-w", str(path), "-v", self.voice, "-s", str(self.rate_wpm), "--", phrase]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as error:
            raise AudioError(f"espeak-ng failed to render {phrase!r}: {error}") from None
        stderr = result.stderr.strip()
        if result.returncode != 0 or "does not exist" in stderr:
            raise AudioError(
                f"espeak-ng failed to render {phrase!r} with voice {self.voice!r}: "
                f"{stderr or f'exit code {result.returncode}'} "
                "(list the voices with: espeak-ng --voices)"
            )
        try:
            pcm, rate = read_wav(path)
        except ValueError as error:
            raise AudioError(f"espeak-ng wrote a bad file for {phrase!r}: {error}") from None
        speech = Speech(trim_silence(pcm, rate), rate, phrase)
        problem = speech_problem(speech, self.rate_wpm)
        if problem is not None:
            raise AudioError(f"espeak-ng rendered {phrase!r} badly: {problem}")
        return speech


class Pyttsx3Espeak:
    """pyttsx3's espeak driver used the one way that proved reliable on these machines.

    pyttsx3 initialises espeak-ng in AUDIO_OUTPUT_RETRIEVAL mode, which is asynchronous:
    synthesis and parameter changes run on espeak's own thread, so ``runAndWait`` returns
    before the WAV is written and a rate set just before a render is sometimes ignored.
    Here properties are set on the driver directly (pyttsx3's engine would queue them behind
    a busy flag) and ``espeak_Synchronize`` is called before and after every change and
    render, so each one has taken effect before the next begins.
    """

    def __init__(self) -> None:
        """Create pyttsx3's espeak engine (espeak-ng is initialised once per process).

        Raises:
            Exception: whatever pyttsx3 raises when libespeak-ng is missing or broken.

        """
        import pyttsx3
        from pyttsx3.drivers import _espeak
        from pyttsx3.drivers.espeak import EspeakDriver

        with contextlib.redirect_stdout(io.StringIO()):
            self._engine = pyttsx3.init("espeak")
        self._espeak = _espeak
        self._driver = EspeakDriver

    def configure(self, voice: str, rate_wpm: int) -> None:
        """Set voice, rate (words per minute) and full volume, and check the rate took.

        Raises:
            ValueError: espeak-ng refuses the voice.
            RuntimeError: the rate did not take effect.

        """
        self._espeak.Synchronize()
        self._driver.setProperty("voice", voice)
        self._driver.setProperty("rate", rate_wpm)
        self._driver.setProperty("volume", 1.0)
        self._espeak.Synchronize()
        rate = self._driver.getProperty("rate")
        if rate != rate_wpm:
            raise RuntimeError(f"espeak-ng kept rate {rate} instead of {rate_wpm}")

    def render(self, text: str, path: Path) -> None:
        """Render ``text`` to a WAV file at ``path`` (one phrase per ``runAndWait``)."""
        with contextlib.redirect_stdout(io.StringIO()):  # the driver prints per file
            self._engine.save_to_file(text, str(path))
            self._engine.runAndWait()
            self._espeak.Synchronize()  # the file is written by espeak's thread


def _pyttsx3_engine() -> tuple[Pyttsx3Espeak | None, str | None]:
    """Return the process's pyttsx3 espeak engine (created once), or (None, reason)."""
    global _ENGINE
    if _ENGINE is None:
        try:
            _ENGINE = Pyttsx3Espeak()
        except Exception as error:  # missing library, failed espeak initialisation, ...
            return None, f"{type(error).__name__}: {error}"
        atexit.register(_drop_engine)
    return _ENGINE, None


def _drop_engine() -> None:
    """Release the engine while modules still exist (pyttsx3's finaliser fails at shutdown)."""
    global _ENGINE
    _ENGINE = None
    gc.collect()


def _wait_for_wav(path: Path, phrase: str) -> tuple[Speech | None, str | None]:
    """Wait up to :data:`FILE_WAIT_S` for a complete WAV at ``path``; trimmed speech or problem.

    ``runAndWait`` may return before the driver has written the file, so a missing or
    incomplete file is polled briefly before it counts as a failed render.
    """
    deadline = time.monotonic() + FILE_WAIT_S
    while True:
        try:
            pcm, rate = read_wav(path)
        except ValueError as error:
            if time.monotonic() >= deadline:
                return None, str(error)
            time.sleep(0.005)
            continue
        return Speech(trim_silence(pcm, rate), rate, phrase), None
