"""The only place that wires sources, the core, the cue engine and the sinks together."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coach.athlete import athlete_baseline
from coach.config import CoachConfig
from coach.cues import CueEngine
from coach.sources.csv_folder import CsvSession
from coach.sources.recorded_session import RecordedSession
from coach.sources.replay import iter_blocks, nominal_rate_hz
from coach.stream.core import CoreOutput, SensorSpec, StreamCore
from coach.types import Cue, GaitEvent, Location, QualityChange, SampleBlock, Stride

ProgressCallback = Callable[[float], None]

#: Block length of a replay as fast as possible, s. Results do not depend on it (chunking
#: invariance); longer blocks cost less per sample. At most a few seconds: the core keeps 6 s
#: of history for stride assembly.
FAST_BLOCK_S = 2.5


@dataclass
class RunResult:
    """Everything a replay produced, in time order."""

    events: list[GaitEvent] = field(default_factory=list)
    strides: list[Stride] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    quality: list[QualityChange] = field(default_factory=list)
    duration_s: float = 0.0
    sensors: tuple[SensorSpec, ...] = ()

    def absorb(self, output: CoreOutput, cues: list[Cue]) -> None:
        """Append one step's outputs."""
        self.events.extend(output.events)
        self.strides.extend(output.strides)
        self.quality.extend(output.quality)
        self.cues.extend(cues)


def sensor_specs(session: CsvSession) -> list[SensorSpec]:
    """The core's view of a recorded session's sensors (rate from the median interval)."""
    return [
        SensorSpec(location, nominal_rate_hz(block.t), block.has_gyro)
        for location, block in sorted(session.blocks.items(), key=lambda kv: kv[0].value)
    ]


class Pipeline:
    """Core plus cue engine, fed block by block (the same object serves live runs and replays)."""

    def __init__(
        self, config: CoachConfig, sensors: list[SensorSpec], standby_fallback: bool = True
    ) -> None:
        self.config = config
        self.core = StreamCore(config.detection, sensors, standby_fallback)
        self.cues = CueEngine(
            config.cues,
            athlete_baseline(config),
            output_latency_ms=config.audio.output_latency_ms,
            beat_aligned=config.audio.beat_aligned,
        )

    def feed(self, block: SampleBlock) -> tuple[CoreOutput, list[Cue]]:
        """Process one block; returns the core's outputs and the cues decided."""
        output = self.core.update(block)
        cues = (
            self.cues.update(output.strides) if output.strides and self.config.cues.enabled else []
        )
        return output, cues

    def apply_config(self, config: CoachConfig) -> None:
        """Swap in a new config between strides (live reload, remote tuning).

        Only the cue engine takes it (its running state starts afresh); detection settings
        need a restart.
        """
        self.config = config
        self.cues = CueEngine(
            config.cues,
            athlete_baseline(config),
            output_latency_ms=config.audio.output_latency_ms,
            beat_aligned=config.audio.beat_aligned,
        )

    def sensor_status(
        self, location: Location, connected: bool, t: float
    ) -> tuple[CoreOutput, list[Cue]]:
        """A sensor (dis)connected at session time ``t`` (s): tell the core, cue what closes."""
        output = self.core.sensor_status(location, connected, t)
        cues = (
            self.cues.update(output.strides) if output.strides and self.config.cues.enabled else []
        )
        return output, cues

    def finish(self) -> tuple[CoreOutput, list[Cue]]:
        """Close the stream: the strides that can still be completed, and their cues."""
        output = self.core.finish()
        cues = (
            self.cues.update(output.strides) if output.strides and self.config.cues.enabled else []
        )
        return output, cues


def replay_blocks(
    config: CoachConfig,
    sensors: list[SensorSpec],
    blocks: Iterable[SampleBlock],
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Run blocks through the pipeline as fast as possible."""
    pipeline = Pipeline(config, sensors, standby_fallback=False)  # nothing disconnects here
    result = RunResult(sensors=tuple(sensors))
    for block in blocks:
        result.absorb(*pipeline.feed(block))
        result.duration_s = max(result.duration_s, float(block.t[-1]))
        if progress is not None:
            progress(result.duration_s)
    result.absorb(*pipeline.finish())
    return result


def replay_session(
    config: CoachConfig,
    session: CsvSession,
    block_s: float = FAST_BLOCK_S,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Replay a CSV session through the pipeline as fast as possible.

    Args:
        config: the effective config.
        session: the recording.
        block_s: block length the stream is cut into, s (results do not depend on it).
        progress: called with the session time reached, s.

    """
    return replay_blocks(config, sensor_specs(session), iter_blocks(session, block_s), progress)


def session_locations(session: CsvSession) -> list[Location]:
    """Locations present in a session, in a stable order."""
    return sorted(session.blocks, key=lambda loc: loc.value)


def recorded_sensor_specs(session: RecordedSession) -> list[SensorSpec]:
    """The core's view of a raw recording's sensors (configured rate, gyro from the profile)."""
    return [
        SensorSpec(location, sensor.rate_hz, sensor.has_gyro)
        for location, sensor in sorted(session.sensors.items(), key=lambda kv: kv[0].value)
    ]


def replay_recording(
    config: CoachConfig,
    session: RecordedSession,
    block_s: float = FAST_BLOCK_S,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Replay a raw recording as fast as possible: decode (as live) then the same pipeline.

    Args:
        config: the effective config.
        session: the recording opened for decoding; its decoder counters are those of this
            replay afterwards (``session.stats``).
        block_s: host time gathered per block, s (0: one block per notification, as live).
        progress: called with the session time reached, s.

    """
    blocks = (block for _host, block in session.iter_blocks(block_s))
    return replay_blocks(config, recorded_sensor_specs(session), blocks, progress)
