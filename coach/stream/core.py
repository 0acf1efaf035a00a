"""The streaming core: samples in, contact events, per-stance strides and quality flags out.

One :class:`StreamCore` per session. Blocks of any size from any sensor, in any interleaving,
go to :meth:`StreamCore.update`; each call returns what became known. Per sensor: time
alignment onto a uniform grid (align.py), saturation check, then the sensor's stages: shank/foot
contact detection, or pelvis orientation + pelvis contact detection. Each side's contacts come
from its shank (or foot) sensor when one is worn and connected, else from the pelvis fallback.
Strides are assembled from the contacts and the pelvis angles (strides.py).

Pure and synchronous: no I/O, no clocks; the runtime reports connection changes through
:meth:`StreamCore.sensor_status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from coach.config import DetectionConfig
from coach.stream.align import UniformResampler
from coach.stream.pelvis_contacts import PelvisContactDetector
from coach.stream.pelvis_orientation import PelvisTracker
from coach.stream.quality import QualityTracker, SaturationDetector
from coach.stream.shank_contacts import ShankContactDetector
from coach.stream.strides import StrideAssembler, StrideTiming
from coach.types import (
    FloatArray,
    GaitEvent,
    Location,
    QualityChange,
    QualityFlag,
    SampleBlock,
    Side,
    Stride,
)

#: After a gap, detectors need a moment to lock on again; the gap flag covers it, s.
GAP_SETTLE_S = 0.5
#: A saturated sample flags this much time around it, s.
SATURATION_MARGIN_S = 0.05

_LIMB_LOCATIONS: dict[Side, tuple[Location, ...]] = {
    Side.LEFT: (Location.LEFT_SHANK, Location.LEFT_FOOT),
    Side.RIGHT: (Location.RIGHT_SHANK, Location.RIGHT_FOOT),
}


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """A sensor the core will receive samples from.

    Attributes:
        location: where it is worn.
        rate_hz: its nominal sample rate, Hz.
        has_gyro: whether it measures angular rate.

    """

    location: Location
    rate_hz: float
    has_gyro: bool = True


@dataclass(frozen=True, slots=True)
class CoreOutput:
    """What one call of the core made known."""

    events: tuple[GaitEvent, ...] = ()
    strides: tuple[Stride, ...] = ()
    quality: tuple[QualityChange, ...] = ()


@dataclass
class _SensorStages:
    spec: SensorSpec
    resampler: UniformResampler
    saturation: SaturationDetector = field(default_factory=SaturationDetector)
    connected: bool = True
    watermark: float = float("-inf")


class StreamCore:
    """Wire the per-sensor stages and the stride assembly for one session.

    Args:
        config: detection parameters.
        sensors: the sensors that will stream (their location, rate and whether they have a
            gyroscope).
        standby_fallback: keep the pelvis contact detector running while both sides have a
            limb sensor, so it takes over at once when one drops out (live runs). A replay,
            where no sensor disconnects, skips that work: the outputs are the same.

    """

    def __init__(
        self,
        config: DetectionConfig,
        sensors: Sequence[SensorSpec],
        standby_fallback: bool = True,
    ) -> None:
        self.config = config
        self.standby_fallback = standby_fallback
        self.sensors = tuple(sensors)
        self._stages = {
            s.location: _SensorStages(
                s,
                UniformResampler(s.location, s.rate_hz, config.max_interpolated_gap_s),
                SaturationDetector(check_acc=s.location.side is Side.UNKNOWN),
            )
            for s in sensors
        }
        self._limb_detectors: dict[Location, ShankContactDetector] = {}
        for spec in sensors:
            side = spec.location.side
            if side is not Side.UNKNOWN and spec.has_gyro:
                segment: Literal["shank", "foot"] = (
                    "foot" if spec.location.value.endswith("foot") else "shank"
                )
                self._limb_detectors[spec.location] = ShankContactDetector(
                    side, spec.rate_hz, config, segment=segment
                )
        pelvis = self._stages.get(Location.PELVIS)
        self._pelvis_tracker = (
            PelvisTracker(pelvis.spec.rate_hz, config)
            if pelvis is not None and pelvis.spec.has_gyro
            else None
        )
        self._pelvis_contacts = (
            PelvisContactDetector(pelvis.spec.rate_hz, config) if pelvis is not None else None
        )
        self.quality = QualityTracker()
        self._assembler = StrideAssembler(
            StrideTiming(
                min_step_s=60.0 / config.max_cadence_spm, max_step_s=60.0 / config.min_cadence_spm
            ),
            pelvis_angles=self._pelvis_tracker is not None,
            toe_off_sides=frozenset(self._limb_side(loc) for loc in self._limb_detectors),
            quality=self.quality.flags_between,
            ring_rate_hz=max((s.rate_hz for s in sensors), default=200.0) * 1.05,
        )
        if self._pelvis_contacts is None:
            limb_sides = {location.side for location in self._limb_detectors}
            for side in {Side.LEFT, Side.RIGHT} - limb_sides:
                self._assembler.set_side_without_source(side)

    @staticmethod
    def _limb_side(location: Location) -> Side:
        return location.side

    def reset(self) -> None:
        """Start again from nothing (a new session)."""
        self.__init__(self.config, self.sensors, self.standby_fallback)  # type: ignore[misc]

    def _source_for(self, side: Side) -> Location:
        """Which sensor provides this side's contacts now."""
        for location in _LIMB_LOCATIONS[side]:
            if location in self._limb_detectors and self._stages[location].connected:
                return location
        return Location.PELVIS

    def update(self, block: SampleBlock) -> CoreOutput:
        """Process one block of one sensor; returns the events, strides and flags now known."""
        stages = self._stages.get(block.location)
        if stages is None or len(block) == 0:
            return CoreOutput()
        changes: list[QualityChange] = []
        clipped = stages.saturation.update(block)
        if clipped.shape[0]:
            self.quality.add(
                block.location,
                QualityFlag.SATURATION,
                float(clipped[0]) - SATURATION_MARGIN_S,
                float(clipped[-1]) + SATURATION_MARGIN_S,
            )
        aligned, gaps = stages.resampler.update(block)
        for gap in gaps:
            self.quality.add(block.location, QualityFlag.GAP, gap.t_start, gap.t_end + GAP_SETTLE_S)
            changes.append(QualityChange(gap.t_start, block.location, QualityFlag.GAP, True))
        if len(aligned) == 0:
            return CoreOutput(quality=tuple(changes))
        stages.watermark = float(aligned.t[-1])

        events: list[GaitEvent] = []
        location = block.location
        if location in self._limb_detectors:
            side = location.side
            found = self._limb_detectors[location].update(aligned)
            self._assembler.add_shank_acc(side, aligned.t, aligned.acc)
            if self._source_for(side) is location:
                events.extend(found)
                self._assembler.set_watermark(side, stages.watermark)
        elif location is Location.PELVIS:
            changes.extend(self._update_pelvis(aligned, events))
        self._assembler.add_events(events)
        strides = self._assembler.poll()
        self.quality.prune(min(s.watermark for s in self._stages.values()))
        return CoreOutput(tuple(events), tuple(strides), tuple(changes))

    def _update_pelvis(self, aligned: SampleBlock, events: list[GaitEvent]) -> list[QualityChange]:
        changes: list[QualityChange] = []
        if self._pelvis_tracker is not None:
            angles = self._pelvis_tracker.update(aligned)
            self._assembler.add_pelvis(
                angles.t,
                angles.obliquity_deg,
                angles.rotation_deg,
                angles.valid,
                angles.vertical_position_m,
                angles.obliquity_valid,
                angles.forward_velocity_mps,
            )
            for t_changed in angles.t[angles.mount_changed]:
                self.quality.add(
                    Location.PELVIS,
                    QualityFlag.MOUNT_CHANGED,
                    float(t_changed),
                    float(t_changed) + self.config.calibration_s,
                )
                changes.append(
                    QualityChange(
                        float(t_changed), Location.PELVIS, QualityFlag.MOUNT_CHANGED, True
                    )
                )
            changes.extend(
                self._track_flag(QualityFlag.CALIBRATING, angles.t, ~angles.obliquity_valid)
            )
            changes.extend(self._track_flag(QualityFlag.TURNING, angles.t, angles.turning))
        fallback_sides = {
            side for side in (Side.LEFT, Side.RIGHT) if self._source_for(side) is Location.PELVIS
        }
        if self._pelvis_contacts is not None and (fallback_sides or self.standby_fallback):
            found = self._pelvis_contacts.update(aligned)
            if fallback_sides == {Side.LEFT, Side.RIGHT}:
                fallback_sides.add(Side.UNKNOWN)
            events.extend(e for e in found if e.side in fallback_sides)
            for side in fallback_sides - {Side.UNKNOWN}:
                self._assembler.set_watermark(side, float(aligned.t[-1]))
        return changes

    def _track_flag(
        self, flag: QualityFlag, t: FloatArray, active: np.ndarray
    ) -> list[QualityChange]:
        """Raise or clear a pelvis flag at the exact samples where ``active`` flips."""
        changes = []
        was_active = self.quality.is_active(Location.PELVIS, flag)
        for index in np.flatnonzero(np.diff(active, prepend=was_active)):
            change = self.quality.set_active(
                Location.PELVIS, flag, bool(active[index]), float(t[index])
            )
            if change is not None:
                changes.append(change)
        return changes

    def sensor_status(self, location: Location, connected: bool, t: float) -> CoreOutput:
        """Tell the core a sensor (dis)connected at session time ``t`` (s), from the runtime."""
        stages = self._stages.get(location)
        if stages is None or stages.connected == connected:
            return CoreOutput()
        stages.connected = connected
        if location is Location.PELVIS:
            self._assembler.set_pelvis_available(connected)
        change = self.quality.set_active(location, QualityFlag.STALE_SENSOR, not connected, t)
        strides = self._assembler.poll()
        return CoreOutput(strides=tuple(strides), quality=(change,) if change else ())

    def finish(self) -> CoreOutput:
        """End of stream: close what can still be closed (the last stance stays open)."""
        for side in (Side.LEFT, Side.RIGHT):
            self._assembler.set_watermark(side, float("inf"))
        self._assembler.set_pelvis_available(False)
        return CoreOutput(strides=tuple(self._assembler.poll()))
