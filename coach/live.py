"""Live runs: BLE sensors -> decoders -> the pipeline -> spoken cues, MQTT, recording, view.

Part of the runtime (the only layer that wires sources, core and sinks). One asyncio loop runs
everything in a TaskGroup: the BLE callbacks only stamp and queue packets (coach.sources.ble);
one task decodes them and feeds the pipeline, one follows the sensors' connection changes, one
does the housekeeping (recording flushes, live reload, remote tuning, the terminal view, the
stop time). Sinks never block the core: audio plays from memory on its own device thread, MQTT
publishing only queues, the recorder appends to a buffered file that it flushes on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from coach import __version__
from coach.config import CoachConfig, config_to_toml_dict
from coach.config_watch import ConfigWatcher
from coach.profiles import FirmwareProfile, available_profiles, load_profile
from coach.remote_tuning import RemoteTuner
from coach.runtime import Pipeline, RunResult
from coach.sinks.audio import AudioOutput
from coach.sinks.live_view import LiveView
from coach.sinks.mqtt import MqttPublisher
from coach.sinks.recorder import ProfileText, Recorder
from coach.sinks.speech import PhraseBank, config_phrases
from coach.sources.ble import BleBackend, SensorStatus, SensorStream, SensorTarget
from coach.sources.recorded_session import RATES_METADATA_KEY
from coach.stream.core import CoreOutput, SensorSpec
from coach.types import Cue, GaitEvent, Location, QualityChange, SampleBlock, Stride
from coach.wire import Decoder, make_decoder

log = logging.getLogger(__name__)

#: How often the housekeeping task runs, s.
HOUSEKEEPING_S = 0.25


@dataclass
class LiveOptions:
    """How a live run behaves (from the command line).

    Attributes:
        duration_s: stop after this long (session time), None: until Ctrl-C / SIGTERM.
        audio: ``device`` to speak cues, ``none`` for silence (cues still decided and logged).
        record_path: the raw recording (None: no recording).
        config_path: the config file, watched for live reload (None: no reload).
        view: show the live terminal view.
        connect_timeout_s: how long to look for the sensors at start.

    """

    duration_s: float | None = None
    audio: str = "device"
    record_path: Path | None = None
    config_path: Path | None = None
    view: bool = True
    connect_timeout_s: float = 20.0


@dataclass
class LiveResult:
    """What a live run produced, plus its link and decoder figures."""

    run: RunResult = field(default_factory=RunResult)
    decoder_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped_packets: int = 0
    record_path: Path | None = None
    reloads: int = 0


def default_record_path(config: CoachConfig, now: datetime.datetime | None = None) -> Path:
    """``<recording.directory>/<athlete>-<YYYYmmdd-HHMMSS>.mcap``."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path(config.recording.directory) / f"{config.athlete.name}-{stamp}.mcap"


class SinkHub:
    """Where a running pipeline's outputs go: speech, MQTT, recorder, view; plus live reload.

    Shared by live runs and real-pace replays, so both speak, publish and reload alike.

    Args:
        config: the effective config.
        options: run options (audio output, config file to watch).
        view: the terminal view.
        clock: session clock, s.

    """

    def __init__(
        self,
        config: CoachConfig,
        options: LiveOptions,
        view: LiveView,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.options = options
        self.view = view
        self.clock = clock
        self.result = LiveResult(record_path=options.record_path)
        self.pipeline: Pipeline | None = None
        self.recorder: Recorder | None = None
        self.mqtt: MqttPublisher | None = None
        self._audio: AudioOutput | None = None
        self._bank: PhraseBank | None = None
        self._watcher: ConfigWatcher | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SinkHub]:
        """Open the sinks (audio device, MQTT connection); always close them."""
        try:
            self._bank = PhraseBank.from_config(self.config.audio, config_phrases(self.config.cues))
            audio = self.config.audio.model_copy(update={"output": self.options.audio})
            self._audio = AudioOutput.from_config(audio)
            self._audio.wait_ready(2.0)
            if self.options.config_path is not None:
                self._watcher = ConfigWatcher(
                    self.options.config_path,
                    on_change=self.apply_config,
                    on_error=lambda message: self.view.note(f"config not reloaded: {message}"),
                    current=self.config,
                )
            async with contextlib.AsyncExitStack() as stack:
                if self.config.mqtt.enabled:
                    self.mqtt = MqttPublisher(
                        self.config.mqtt, self.config.athlete.name, tuner=RemoteTuner(self.config)
                    )
                    await stack.enter_async_context(self.mqtt)
                yield self
        finally:
            self.view.stop()
            if self.recorder is not None:
                self.recorder.close()
            if self._audio is not None:
                self._audio.close()

    def housekeeping(self) -> None:
        """Flush the recording, apply reloaded or remote config, refresh the view."""
        now = self.clock()
        if self.recorder is not None:
            self.recorder.flush_if_due()
        if self._watcher is not None:
            self._watcher.poll(now)
        if self.mqtt is not None:
            while not self.mqtt.config_updates.empty():
                self.apply_config(self.mqtt.config_updates.get_nowait())
        self.view.refresh(now)

    def apply_config(self, config: CoachConfig) -> None:
        """Swap in a new config between strides; render any new phrase first."""
        if self._bank is not None:
            new = [p for p in config_phrases(config.cues) if p not in self._bank]
            if new:
                self._bank.render(new)
        self.config = config
        if self.pipeline is not None:
            self.pipeline.apply_config(config)
        self.result.reloads += 1
        self.view.note(f"config applied at {self.clock():.1f} s")
        log.info("config applied at session time %.1f s", self.clock())

    def absorb(self, output: CoreOutput, cues: list[Cue]) -> None:
        """Hand one step's outputs to every sink (none of them blocks)."""
        self.result.run.absorb(output, cues)
        if output.strides:
            self.result.run.duration_s = max(
                self.result.run.duration_s, output.strides[-1].t_detected
            )
        for stride in output.strides:
            self.view.stride(stride)
        for cue in cues:
            self._speak(cue)
            self.view.cue(cue)
        if self.mqtt is not None:
            for event in output.events:
                self.mqtt.publish_event(event)
            for stride in output.strides:
                self.mqtt.publish_stride(stride)
            for change in output.quality:
                self.mqtt.publish_quality(change)
            for cue in cues:
                self.mqtt.publish_cue(cue)
        if self.recorder is not None:
            values: list[GaitEvent | Stride | QualityChange | Cue] = [
                *output.events,
                *output.strides,
                *output.quality,
                *cues,
            ]
            for value in values:
                self.recorder.write_value(value)

    def _speak(self, cue: Cue) -> None:
        if self._audio is None or self._bank is None or cue.phrase not in self._bank:
            return
        speech = self._bank.get(cue.phrase)
        delay = 0.0 if cue.play_at is None else cue.play_at - self.clock()
        if delay > 0.0:
            asyncio.get_running_loop().call_later(delay, self._audio.play, speech)
        else:
            self._audio.play(speech)


class LiveSession:
    """One live run of the configured sensors.

    Args:
        config: the effective config.
        options: run options.
        backend: bleak backends (None: the platform's, BlueZ on Linux).
        clock: session clock in s (None: monotonic time since the stream was made).

    """

    def __init__(
        self,
        config: CoachConfig,
        options: LiveOptions,
        backend: BleBackend | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.profiles: dict[Location, FirmwareProfile] = {
            Location(s.location): load_profile(s.profile) for s in config.sensors
        }
        targets = [
            SensorTarget.from_config(s, {p.name: p for p in self.profiles.values()})
            for s in config.sensors
        ]
        self.stream = SensorStream(targets, backend=backend, clock=clock)
        self.hub = SinkHub(config, options, LiveView(enabled=options.view), self.stream.clock)
        self._decoders: dict[Location, Decoder] = {}
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop the run cleanly (from a signal handler or a test)."""
        self._stop.set()

    async def run(self) -> LiveResult:
        """Connect, stream until stopped, then close everything; returns what was produced."""
        async with _stop_on_signals(self.request_stop), self.hub.running() as hub:
            async with contextlib.AsyncExitStack() as stack:
                connected = await self.stream.start(self.options.connect_timeout_s)
                stack.push_async_callback(self.stream.stop)
                self._start_pipeline(connected)
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._consume_packets())
                        tasks.create_task(self._follow_status())
                        tasks.create_task(self._housekeeping())
                        await self._stop.wait()
                        raise _StopRequestedError
                except* _StopRequestedError:
                    pass
            self._drain_packets()
            hub.absorb(*self._pipeline().finish())
        hub.result.dropped_packets = self.stream.dropped
        hub.result.decoder_stats = {
            loc.value: decoder.stats.as_dict() for loc, decoder in self._decoders.items()
        }
        return hub.result

    def _start_pipeline(self, connected: list[Location]) -> None:
        specs = []
        for location, profile in self.profiles.items():
            link = self.stream.links[location]
            self._decoders[location] = make_decoder(profile, link.rate_hz)
            specs.append(SensorSpec(location, link.rate_hz, profile.has_gyro))
        self.hub.pipeline = Pipeline(self.hub.config, specs)
        for location in self.profiles:
            if location not in connected:
                status = self.hub.pipeline.sensor_status(location, False, self.stream.clock())
                self.hub.absorb(*status)
        if self.options.record_path is not None:
            self.hub.recorder = Recorder(
                self.options.record_path,
                tomli_w.dumps(config_to_toml_dict(self.config)),
                {
                    loc.value: ProfileText(p.name, available_profiles()[p.name].read_text())
                    for loc, p in self.profiles.items()
                },
                self.config.recording.flush_interval_s,
                extra_metadata={
                    "athlete": self.config.athlete.name,
                    RATES_METADATA_KEY: json.dumps(
                        {loc.value: self.stream.links[loc].rate_hz for loc in self.profiles}
                    ),
                    "software": f"coach {__version__}",
                },
            )
        self.hub.view.start({loc: self.stream.links[loc].rate_hz for loc in self.profiles})

    def _pipeline(self) -> Pipeline:
        if self.hub.pipeline is None:
            raise RuntimeError("the pipeline starts once the sensors are connected")
        return self.hub.pipeline

    async def _consume_packets(self) -> None:
        while True:
            packet = await self.stream.packets.get()
            self._handle_packet(packet.location, packet.host_time_s, packet.payload)

    def _drain_packets(self) -> None:
        """Everything already received is processed and recorded: nothing is lost at the stop."""
        while not self.stream.packets.empty():
            packet = self.stream.packets.get_nowait()
            self._handle_packet(packet.location, packet.host_time_s, packet.payload)

    def _handle_packet(self, location: Location, host_time_s: float, payload: bytes) -> None:
        if self.hub.recorder is not None:
            self.hub.recorder.write_raw(location.value, host_time_s, payload)
        decoded = self._decoders[location].feed(payload, host_time_s)
        self.hub.view.packet(location, len(decoded), host_time_s)
        if len(decoded):
            self.hub.absorb(*self._pipeline().feed(decoded.to_block(location)))

    async def _follow_status(self) -> None:
        while True:
            status: SensorStatus = await self.stream.status.get()
            self.hub.view.status(status)
            if self.hub.pipeline is not None:
                self.hub.absorb(
                    *self.hub.pipeline.sensor_status(status.location, status.connected, status.t)
                )
            if self.hub.mqtt is not None:
                self.hub.mqtt.publish_status(
                    {"sensors": {status.location.value: status.state.value}}
                )

    async def _housekeeping(self) -> None:
        while True:
            self.hub.housekeeping()
            if (
                self.options.duration_s is not None
                and self.stream.clock() >= self.options.duration_s
            ):
                self.request_stop()
            await asyncio.sleep(HOUSEKEEPING_S)


async def paced_replay(
    config: CoachConfig,
    sensors: list[SensorSpec],
    blocks: Iterable[tuple[float, SampleBlock]],
    speed: float,
    options: LiveOptions,
) -> LiveResult:
    """Replay time-stamped blocks at ``speed`` × real pace through the live sinks.

    Cues are spoken on the device as they fire, MQTT publishes as in a live run, and the config
    file (``options.config_path``) is reloaded when saved. Each item is ``(time_s, block)``
    with ``time_s`` the moment it arrived in the recording (s).
    """
    loop = asyncio.get_running_loop()
    started_wall = loop.time()
    first_t: float | None = None
    view = LiveView(enabled=options.view)

    def clock() -> float:
        return (first_t or 0.0) + (loop.time() - started_wall) * speed

    hub = SinkHub(config, options, view, clock)
    stop = asyncio.Event()
    async with _stop_on_signals(stop.set), hub.running():
        hub.pipeline = Pipeline(config, sensors)
        view.start({spec.location: spec.rate_hz for spec in sensors}, state="replaying")
        next_housekeeping = 0.0
        for t, block in blocks:
            if first_t is None:
                first_t = t
            wait = (t - clock()) / speed
            if wait > 0.0:
                await asyncio.sleep(wait)
            if stop.is_set():
                break
            view.packet(block.location, len(block), t)
            hub.absorb(*hub.pipeline.feed(block))
            if loop.time() >= next_housekeeping:
                hub.housekeeping()
                next_housekeeping = loop.time() + HOUSEKEEPING_S
        hub.absorb(*hub.pipeline.finish())
    return hub.result


@contextlib.asynccontextmanager
async def _stop_on_signals(stop: Callable[[], None]) -> AsyncIterator[None]:
    """Ctrl-C and SIGTERM call ``stop`` (a clean stop) instead of killing the process."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop)
            installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


class _StopRequestedError(Exception):
    """Raised inside the task group to end it when a stop is requested."""
