"""Values shared by every part of coach: sample blocks, events, strides, flags and cues.

Conventions (see ``design.md`` section 3): SI units inside (m/s², rad/s, s), degrees only in
fields whose name ends in ``_deg``; body frame of every segment x forward, y left, z up.
Every time is session time in seconds (float64) since the session started.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Where a sensor is worn. The string values are the CSV file stems of a session folder.
LOCATIONS: tuple[str, ...] = ("pelvis", "left_shank", "right_shank", "left_foot", "right_foot")


class Location(enum.StrEnum):
    """Body location of one sensor."""

    PELVIS = "pelvis"
    LEFT_SHANK = "left_shank"
    RIGHT_SHANK = "right_shank"
    LEFT_FOOT = "left_foot"
    RIGHT_FOOT = "right_foot"

    @property
    def side(self) -> Side:
        """Body side the location belongs to (``unknown`` for the pelvis)."""
        if self.value.startswith("left"):
            return Side.LEFT
        if self.value.startswith("right"):
            return Side.RIGHT
        return Side.UNKNOWN


class Side(enum.StrEnum):
    """Body side of an event or stance."""

    LEFT = "left"
    RIGHT = "right"
    UNKNOWN = "unknown"

    @property
    def other(self) -> Side:
        """The contralateral side (``unknown`` stays ``unknown``)."""
        if self is Side.LEFT:
            return Side.RIGHT
        if self is Side.RIGHT:
            return Side.LEFT
        return Side.UNKNOWN


class EventKind(enum.StrEnum):
    """Gait event kinds written to the events CSV."""

    INITIAL_CONTACT = "initial_contact"
    TOE_OFF = "toe_off"


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Consecutive samples of one sensor, already decoded to SI units in the sensor frame.

    Attributes:
        location: where the sensor is worn.
        t: session time of each sample, s, shape (n,), strictly increasing.
        acc: specific force including gravity, m/s², shape (n, 3), sensor frame.
        gyr: angular rate, rad/s, shape (n, 3), sensor frame; ``None`` without gyroscope.

    """

    location: Location
    t: FloatArray
    acc: FloatArray
    gyr: FloatArray | None = None

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        if self.t.ndim != 1 or self.acc.shape != (n, 3):
            raise ValueError(f"acc must have shape ({n}, 3), got {self.acc.shape}")
        if self.gyr is not None and self.gyr.shape != (n, 3):
            raise ValueError(f"gyr must have shape ({n}, 3), got {self.gyr.shape}")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def has_gyro(self) -> bool:
        """True when the block carries angular rate."""
        return self.gyr is not None

    def slice(self, start: int, stop: int) -> SampleBlock:
        """Samples ``start:stop`` as a new block (views, no copy)."""
        return SampleBlock(
            self.location,
            self.t[start:stop],
            self.acc[start:stop],
            None if self.gyr is None else self.gyr[start:stop],
        )


@dataclass(frozen=True, slots=True)
class GaitEvent:
    """A foot contact event.

    Attributes:
        t: when it happened, session time, s.
        t_detected: session time of the last sample needed to detect it, s.
        kind: initial contact or toe-off.
        side: which foot.

    """

    t: float
    t_detected: float
    kind: EventKind
    side: Side


@dataclass(frozen=True, slots=True)
class Stride:
    """Metrics of one stance (from an initial contact to the next contralateral one).

    ``None`` marks a metric that the present sensors cannot measure; it is never guessed.

    Attributes:
        t: initial contact of this stance, session time, s.
        t_detected: session time of the last sample needed for all metrics, s.
        side: stance side.
        contact_time_ms: initial contact to toe-off of this foot, ms.
        flight_time_ms: toe-off of this foot to the next contralateral initial contact, ms.
        cadence_spm: steps per minute from this initial contact to the next one.
        pelvic_drop_deg: contralateral pelvic drop during this stance, degrees (> 0 = drop).
        pelvic_rotation_deg: peak-to-peak pelvic rotation from this initial contact to the next,
            degrees.
        vertical_oscillation_cm: peak-to-peak vertical pelvis displacement over the step, cm.
        impact_peak_g: peak specific-force magnitude on the stance shank just after contact, g.
        braking_mps: loss of forward pelvis speed during the braking phase, m/s.
        quality: names of the quality flags active during this stance.

    """

    t: float
    t_detected: float
    side: Side
    contact_time_ms: float | None = None
    flight_time_ms: float | None = None
    cadence_spm: float | None = None
    pelvic_drop_deg: float | None = None
    pelvic_rotation_deg: float | None = None
    vertical_oscillation_cm: float | None = None
    impact_peak_g: float | None = None
    braking_mps: float | None = None
    quality: frozenset[str] = field(default_factory=frozenset)


#: Stride metrics that a cue rule may refer to (field names of :class:`Stride`).
STRIDE_METRICS: tuple[str, ...] = (
    "contact_time_ms",
    "flight_time_ms",
    "cadence_spm",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "vertical_oscillation_cm",
    "impact_peak_g",
    "braking_mps",
)


class QualityFlag(enum.StrEnum):
    """Reasons to distrust the data for a while; the cue engine mutes on them."""

    GAP = "gap"
    SATURATION = "saturation"
    STALE_SENSOR = "stale_sensor"
    MISSING_SENSOR = "missing_sensor"
    MOUNT_CHANGED = "mount_changed"
    CALIBRATING = "calibrating"
    TURNING = "turning"


@dataclass(frozen=True, slots=True)
class QualityChange:
    """A quality flag raised or cleared for one location at a session time (s)."""

    t: float
    location: Location
    flag: QualityFlag
    active: bool


@dataclass(frozen=True, slots=True)
class Cue:
    """A spoken cue decided by the cue engine.

    Attributes:
        t: session time of the decision, s.
        rule: name of the rule that fired.
        phrase: what is spoken.
        side: side of the stride that triggered it.
        play_at: session time at which speech should start (beat-aligned cues), s.

    """

    t: float
    rule: str
    phrase: str
    side: Side = Side.UNKNOWN
    play_at: float | None = None
