"""Parameters of the synthetic runner and its scenario (form changes during the run).

All values are SI except the ones whose name says ``_deg`` or ``_spm``. Validation happens at
construction and raises :class:`ValueError` naming the field and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from coach.types import Location

#: Parameters a scenario step may change over time (field names of SimulationParams).
SCENARIO_PARAMETERS: tuple[str, ...] = (
    "cadence_spm",
    "speed_mps",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "asymmetry",
)

MountKind = Literal["nominal", "tilted", "random"]
NoiseLevel = Literal["none", "low", "realistic", "high"]
DEFAULT_SENSORS: tuple[Location, ...] = (
    Location.PELVIS,
    Location.LEFT_SHANK,
    Location.RIGHT_SHANK,
)


@dataclass(frozen=True)
class ScenarioStep:
    """A change of one parameter: from ``start_value`` to ``end_value``.

    Before ``t_start_s`` the parameter holds ``start_value`` (``None``: the value it had before
    this step), after ``t_end_s`` it holds ``end_value``, and in between it ramps linearly. A
    step change has ``t_end_s == t_start_s``. Times are session time in seconds.
    """

    parameter: str
    end_value: float
    t_start_s: float
    t_end_s: float
    start_value: float | None = None

    def __post_init__(self) -> None:
        if self.parameter not in SCENARIO_PARAMETERS:
            raise ValueError(
                f"scenario parameter {self.parameter!r} is not one of "
                f"{', '.join(SCENARIO_PARAMETERS)}"
            )
        values = [self.end_value, self.t_start_s, self.t_end_s]
        if self.start_value is not None:
            values.append(self.start_value)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"scenario step for {self.parameter}: values must be finite")
        if self.t_start_s < 0 or self.t_end_s < self.t_start_s:
            raise ValueError(
                f"scenario step for {self.parameter}: need 0 <= start <= end time, got "
                f"{self.t_start_s} s..{self.t_end_s} s"
            )


_STEP_PATTERN = re.compile(
    r"^\s*(?P<name>[a-z_]+)\s*=\s*(?:(?P<start>[-+0-9.eE]+)\s*->\s*)?(?P<end>[-+0-9.eE]+)"
    r"\s*@\s*(?P<t0>[0-9.eE+]+)\s*s?\s*(?:\.\.\s*(?P<t1>[0-9.eE+]+)\s*s?)?\s*$"
)


def parse_scenario(text: str) -> tuple[ScenarioStep, ...]:
    """Parse a scenario such as ``"pelvic_drop_deg=5->10@120s,cadence_spm=160@120s..600s"``.

    Comma- or semicolon-separated steps ``name=[from->]to@start[s][..end[s]]``: a step change at
    ``start`` or a linear ramp from ``start`` to ``end`` (seconds). Without ``from`` the ramp
    starts at the value the parameter had before.

    Raises:
        ValueError: a step does not follow that syntax or names an unknown parameter.

    """
    steps: list[ScenarioStep] = []
    for part in re.split(r"[,;]", text):
        if not part.strip():
            continue
        match = _STEP_PATTERN.match(part)
        if match is None:
            raise ValueError(
                f"scenario step {part.strip()!r} is not 'name=[from->]to@start[s][..end[s]]', "
                "e.g. 'pelvic_drop_deg=5->10@120s' or 'cadence_spm=172->160@120s..600s'"
            )
        try:
            t0 = float(match["t0"])
            t1 = float(match["t1"]) if match["t1"] else t0
            start = float(match["start"]) if match["start"] else None
            end = float(match["end"])
        except ValueError:
            raise ValueError(f"scenario step {part.strip()!r}: a value is not a number") from None
        steps.append(ScenarioStep(match["name"], end, t0, t1, start))
    return tuple(steps)


@dataclass(frozen=True)
class SimulationParams:
    """What to simulate. SI units except ``_deg`` and ``_spm`` fields.

    Attributes:
        duration_s: length of the session, s (including ``standing_s``).
        seed: seed of every random choice; the same seed gives the same bytes.
        rate_hz: nominal sample rate of every sensor, Hz (20–2000).
        cadence_spm: running cadence, steps per minute.
        speed_mps: running speed, m/s (treadmill belt speed or overground).
        pelvic_drop_deg: mean contralateral pelvic drop per running stance (design.md s. 3).
        pelvic_rotation_deg: mean peak-to-peak pelvic rotation per running step.
        sensors: locations that carry a sensor (pelvis and shanks are modelled).
        mount: ``nominal`` sensor frame = segment frame; ``tilted`` 10–40° about a random axis;
            ``random`` uniform over all rotations (upside-down included).
        noise: sensor imperfections: ``none`` is an ideal float sensor; the others add white
            noise, gyro and accelerometer bias with gyro bias random walk, int16 quantisation
            and saturation at ±16 g / ±2000 °/s (``low`` 0.3×, ``high`` 3× the realistic noise).
        packet_loss: fraction of samples dropped, in bursts of whole packets.
        samples_per_packet: samples per radio packet (the unit that packet loss drops).
        clock_drift_ppm: per-sensor clock rate error, drawn in ±this many ppm; also gives each
            sensor a start offset of 0–5 ms (when > 0).
        scenario: form changes during the run (see :class:`ScenarioStep`).
        asymmetry: relative right-minus-left difference of step time, contact time and pelvic
            drop (0.1 = the right side's values are 10 % larger than the left's).
        walk_breaks: (start_s, end_s) intervals during which the runner walks.
        walk_cadence_spm: cadence while walking.
        walk_speed_mps: speed while walking.
        standing_s: quiet standing at the start (zero posture) before running starts.
        overground: True: heading wanders slowly and speed changes accelerate the body;
            False: treadmill (fixed heading, no mean acceleration).
        variability: relative stride-to-stride variability (coefficient of variation of step
            time is 0.3 × this, of contact time 0.5 ×, of drop and rotation 1 ×).

    """

    duration_s: float = 60.0
    seed: int = 0
    rate_hz: float = 200.0
    cadence_spm: float = 170.0
    speed_mps: float = 3.0
    pelvic_drop_deg: float = 5.0
    pelvic_rotation_deg: float = 10.0
    sensors: tuple[Location, ...] = DEFAULT_SENSORS
    mount: MountKind = "nominal"
    noise: NoiseLevel = "realistic"
    packet_loss: float = 0.0
    samples_per_packet: int = 4
    clock_drift_ppm: float = 0.0
    scenario: tuple[ScenarioStep, ...] = ()
    asymmetry: float = 0.0
    walk_breaks: tuple[tuple[float, float], ...] = ()
    walk_cadence_spm: float = 110.0
    walk_speed_mps: float = 1.4
    standing_s: float = 0.0
    overground: bool = False
    variability: float = 0.05

    def __post_init__(self) -> None:
        _check_range("duration_s", self.duration_s, 1.0, 86400.0)
        _check_range("rate_hz", self.rate_hz, 20.0, 2000.0)
        _check_range("cadence_spm", self.cadence_spm, 100.0, 240.0)
        _check_range("speed_mps", self.speed_mps, 1.5, 8.0)
        _check_range("pelvic_drop_deg", self.pelvic_drop_deg, 0.0, 20.0)
        _check_range("pelvic_rotation_deg", self.pelvic_rotation_deg, 0.0, 40.0)
        _check_range("packet_loss", self.packet_loss, 0.0, 0.5)
        _check_range("clock_drift_ppm", self.clock_drift_ppm, 0.0, 1000.0)
        _check_range("asymmetry", self.asymmetry, -0.5, 0.5)
        _check_range("walk_cadence_spm", self.walk_cadence_spm, 60.0, 150.0)
        _check_range("walk_speed_mps", self.walk_speed_mps, 0.5, 2.5)
        _check_range("standing_s", self.standing_s, 0.0, self.duration_s - 1.0)
        _check_range("variability", self.variability, 0.0, 0.2)
        if not 1 <= self.samples_per_packet <= 64:
            raise ValueError(f"samples_per_packet must be 1..64, got {self.samples_per_packet}")
        if not self.sensors:
            raise ValueError("sensors: at least one location is needed")
        unknown = [s for s in self.sensors if Location(s) not in DEFAULT_SENSORS]
        if unknown:
            raise ValueError(
                f"sensors: {unknown} not simulated; choose from pelvis, left_shank, right_shank"
            )
        if len(set(self.sensors)) != len(self.sensors):
            raise ValueError("sensors: a location is listed twice")
        if self.mount not in ("nominal", "tilted", "random"):
            raise ValueError(f"mount must be nominal, tilted or random, got {self.mount!r}")
        if self.noise not in ("none", "low", "realistic", "high"):
            raise ValueError(f"noise must be none, low, realistic or high, got {self.noise!r}")
        for start, end in self.walk_breaks:
            if not 0.0 <= start < end:
                raise ValueError(f"walk_breaks: need 0 <= start < end, got ({start}, {end})")
        for step in self.scenario:
            if not isinstance(step, ScenarioStep):
                raise ValueError("scenario: items must be ScenarioStep (see parse_scenario)")

    def value_at(self, parameter: str, t: float) -> float:
        """Value of a scenario parameter at session time ``t`` (s), scenario applied."""
        value = float(getattr(self, parameter))
        for step in sorted(
            (s for s in self.scenario if s.parameter == parameter), key=lambda s: s.t_start_s
        ):
            start = value if step.start_value is None else step.start_value
            if t < step.t_start_s:
                return start
            if t >= step.t_end_s:
                value = step.end_value
                continue
            fraction = (t - step.t_start_s) / (step.t_end_s - step.t_start_s)
            return start + fraction * (step.end_value - start)
        return value


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be within {low}..{high}, got {value}")
