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
from collections.abc import Callable
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
from coach.types import Cue, GaitEvent, Location, QualityChange, Stride
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
        self.result = LiveResult(record_path=options.record_path)
        self.view = LiveView(enabled=options.view)
        self._decoders: dict[Location, Decoder] = {}
        self._pipeline: Pipeline | None = None
        self._recorder: Recorder | None = None
        self._audio: AudioOutput | None = None
        self._bank: PhraseBank | None = None
        self._mqtt: MqttPublisher | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop the run cleanly (from a signal handler or a test)."""
        self._stop.set()

    async def run(self) -> LiveResult:
        """Connect, stream until stopped, then close everything; returns what was produced."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.request_stop)
        try:
            self._start_audio()
            async with contextlib.AsyncExitStack() as stack:
                if self.config.mqtt.enabled:
                    self._mqtt = MqttPublisher(
                        self.config.mqtt, self.config.athlete.name, tuner=RemoteTuner(self.config)
                    )
                    await stack.enter_async_context(self._mqtt)
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
                self._absorb(*self._require_pipeline().finish())
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)
            self._close_sinks()
        self.result.dropped_packets = self.stream.dropped
        self.result.decoder_stats = {
            loc.value: decoder.stats.as_dict() for loc, decoder in self._decoders.items()
        }
        return self.result

    def _start_audio(self) -> None:
        output = self.options.audio
        self._bank = PhraseBank.from_config(self.config.audio, config_phrases(self.config.cues))
        self._audio = AudioOutput.from_config(
            self.config.audio.model_copy(update={"output": output})
        )
        self._audio.wait_ready(2.0)

    def _start_pipeline(self, connected: list[Location]) -> None:
        specs = []
        for location, profile in self.profiles.items():
            link = self.stream.links[location]
            self._decoders[location] = make_decoder(profile, link.rate_hz)
            specs.append(SensorSpec(location, link.rate_hz, profile.has_gyro))
        self._pipeline = Pipeline(self.config, specs)
        for location in self.profiles:
            if location not in connected:
                self._absorb(*self._pipeline.sensor_status(location, False, self.stream.clock()))
        if self.options.record_path is not None:
            self._recorder = Recorder(
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
        self.view.start({loc: self.stream.links[loc].rate_hz for loc in self.profiles})

    def _require_pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("the pipeline starts once the sensors are connected")
        return self._pipeline

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
        if self._recorder is not None:
            self._recorder.write_raw(location.value, host_time_s, payload)
        decoded = self._decoders[location].feed(payload, host_time_s)
        self.view.packet(location, len(decoded), host_time_s)
        if len(decoded):
            self._absorb(*self._require_pipeline().feed(decoded.to_block(location)))

    async def _follow_status(self) -> None:
        while True:
            status: SensorStatus = await self.stream.status.get()
            self.view.status(status)
            if self._pipeline is not None:
                self._absorb(
                    *self._pipeline.sensor_status(status.location, status.connected, status.t)
                )
            if self._mqtt is not None:
                self._mqtt.publish_status({"sensors": {status.location.value: status.state.value}})

    async def _housekeeping(self) -> None:
        watcher = None
        if self.options.config_path is not None:
            watcher = ConfigWatcher(
                self.options.config_path,
                on_change=self._apply_config,
                on_error=lambda message: self.view.note(f"config not reloaded: {message}"),
                current=self.config,
            )
        while True:
            now = self.stream.clock()
            if self._recorder is not None:
                self._recorder.flush_if_due()
            if watcher is not None:
                watcher.poll(now)
            if self._mqtt is not None:
                while not self._mqtt.config_updates.empty():
                    self._apply_config(self._mqtt.config_updates.get_nowait())
            self.view.refresh(now)
            if self.options.duration_s is not None and now >= self.options.duration_s:
                self.request_stop()
            await asyncio.sleep(HOUSEKEEPING_S)

    def _apply_config(self, config: CoachConfig) -> None:
        """Swap in a new config between strides; render any new phrase first."""
        if self._bank is not None:
            new = [p for p in config_phrases(config.cues) if p not in self._bank]
            if new:
                self._bank.render(new)
        self.config = config
        self._require_pipeline().apply_config(config)
        self.result.reloads += 1
        self.view.note(f"config applied at {self.stream.clock():.1f} s")
        log.info("config applied at session time %.1f s", self.stream.clock())

    def _absorb(self, output: CoreOutput, cues: list[Cue]) -> None:
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
        if self._mqtt is not None:
            for event in output.events:
                self._mqtt.publish_event(event)
            for stride in output.strides:
                self._mqtt.publish_stride(stride)
            for change in output.quality:
                self._mqtt.publish_quality(change)
            for cue in cues:
                self._mqtt.publish_cue(cue)
        if self._recorder is not None:
            values: list[GaitEvent | Stride | QualityChange | Cue] = [
                *output.events,
                *output.strides,
                *output.quality,
                *cues,
            ]
            for value in values:
                self._recorder.write_value(value)

    def _speak(self, cue: Cue) -> None:
        if self._audio is None or self._bank is None or cue.phrase not in self._bank:
            return
        speech = self._bank.get(cue.phrase)
        delay = 0.0 if cue.play_at is None else cue.play_at - self.stream.clock()
        if delay > 0.0:
            asyncio.get_running_loop().call_later(delay, self._audio.play, speech)
        else:
            self._audio.play(speech)

    def _close_sinks(self) -> None:
        self.view.stop()
        if self._recorder is not None:
            self._recorder.close()
        if self._audio is not None:
            self._audio.close()


class _StopRequestedError(Exception):
    """Raised inside the task group to end it when a stop is requested."""
