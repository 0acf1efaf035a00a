"""Step timeline of the synthetic runner: when each foot lands and leaves, and each step's form.

A step runs from one initial contact (IC) to the next, contralateral, one. Steps alternate right,
left, right, ... (step 0 is a right stance). Each step carries its duration, its stance's contact
time and the target form of that stance (pelvic drop, rotation, speed, running or walking),
drawn from the parameters, the scenario at that time, left/right asymmetry and stride-to-stride
variability.

A smooth gait phase ``Φ(t)`` (a C² cubic spline through ``Φ(IC_k) = k``) drives every periodic
motion, so segment angles and positions have continuous velocities across steps.

Contact time of running follows the speed: ``CT = 0.08 s + 0.51 m / v`` (0.25 s at 3 m/s,
0.28 s at 2.5 m/s, 0.18 s at 5 m/s; Nummela 2007 and Fukuchi 2017 report similar values),
kept within 40–90 % of the step. Walking has a duty factor of 0.62 (double support).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import CubicSpline, PchipInterpolator

from coach.sources.sim_params import SimulationParams
from coach.types import FloatArray

#: Ramp-up from standing to full running, s (only when the session starts with standing). The
#: truth starts half-way through it (see GaitTimeline.t_first_event).
START_RAMP_S = 1.0
#: Steps generated before t = 0 and after the end, s, so that every phase is defined.
PADDING_S = 3.0
WALK_DUTY_FACTOR = 0.62
WALK_DROP_FRACTION = 0.5
WALK_ROTATION_FRACTION = 0.8


@dataclass(frozen=True)
class GaitTimeline:
    """Per-step arrays (index k = step number, even = right stance) and smooth interpolants.

    Attributes:
        ic: initial contact times, s.
        right: True where step k is a right stance.
        step_s: time from IC k to IC k+1, s.
        contact_s: contact time of stance k (IC k to its toe-off), s.
        speed_mps: forward speed during step k.
        walking: 1.0 for walking steps, 0.0 for running steps.
        drop_deg: target contralateral pelvic drop of stance k.
        rotation_deg: target peak-to-peak pelvic rotation of step k.
        duty: stance fraction of the stride that starts at IC k, in gait phase units.
        t_first_event: truth events start here, s: at 0, or after standing from the middle of
            the start-up ramp, where the motion reaches half its running amplitude (contacts
            from there on are clear steps, those before are a shuffle of a few cm).
        standing_s: quiet standing before running, s.

    """

    ic: FloatArray
    right: NDArray[np.bool_]
    step_s: FloatArray
    contact_s: FloatArray
    speed_mps: FloatArray
    walking: FloatArray
    drop_deg: FloatArray
    rotation_deg: FloatArray
    duty: FloatArray
    t_first_event: float
    standing_s: float
    _phase: CubicSpline | PchipInterpolator
    _drop: PchipInterpolator
    _rotation: PchipInterpolator
    _speed: PchipInterpolator
    _walk: PchipInterpolator

    @property
    def toe_off(self) -> FloatArray:
        """Toe-off time of stance k, s."""
        return self.ic + self.contact_s

    def phase(self, t: FloatArray) -> FloatArray:
        """Gait phase Φ(t): step count since step 0, continuous, Φ(IC_k) = k."""
        return np.asarray(self._phase(t), dtype=np.float64)

    def drop_amplitude_deg(self, t: FloatArray) -> FloatArray:
        """Target drop interpolated in time (equal to drop_deg[k] at stance k's peak)."""
        return np.asarray(self._drop(t), dtype=np.float64)

    def rotation_amplitude_deg(self, t: FloatArray) -> FloatArray:
        """Target rotation interpolated in time (equal to rotation_deg[k] at mid-step k)."""
        return np.asarray(self._rotation(t), dtype=np.float64)

    def speed(self, t: FloatArray) -> FloatArray:
        """Forward speed, m/s (0 while standing)."""
        return np.asarray(self._speed(t), dtype=np.float64) * self.envelope(t)

    def walk_weight(self, t: FloatArray) -> FloatArray:
        """0 while running, 1 while walking, smooth over one step at the transitions."""
        return np.clip(np.asarray(self._walk(t), dtype=np.float64), 0.0, 1.0)

    def envelope(self, t: FloatArray) -> FloatArray:
        """Motion amplitude: 0 while standing, smooth (C²) ramp to 1 when running starts."""
        if self.standing_s <= 0.0:
            return np.ones_like(t)
        x = np.clip((t - self.standing_s) / START_RAMP_S, 0.0, 1.0)
        return x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)

    def step_index(self, t: FloatArray) -> NDArray[np.intp]:
        """Index k of the step that contains each time (IC_k <= t < IC_k+1), clipped."""
        k = np.searchsorted(self.ic, t, side="right") - 1
        return np.clip(k, 0, self.ic.size - 2)


def build_timeline(params: SimulationParams, rng: np.random.Generator) -> GaitTimeline:
    """Draw the step timeline of a session (deterministic for a given ``rng`` state)."""
    ics: list[float] = []
    rows: list[tuple[float, float, float, float, float, float]] = []
    t = -PADDING_S
    k = 0
    end = params.duration_s + PADDING_S
    cv = params.variability
    while t < end:
        right = k % 2 == 0
        walking = any(a <= t < b for a, b in params.walk_breaks)
        asym = params.value_at("asymmetry", max(t, 0.0)) if params.scenario else params.asymmetry
        side_factor = 1.0 + asym / 2.0 if right else 1.0 - asym / 2.0
        tq = max(t, 0.0)
        if walking:
            cadence = params.walk_cadence_spm
            speed = params.walk_speed_mps
            drop = WALK_DROP_FRACTION * params.value_at("pelvic_drop_deg", tq)
            rotation = WALK_ROTATION_FRACTION * params.value_at("pelvic_rotation_deg", tq)
        else:
            cadence = params.value_at("cadence_spm", tq)
            speed = params.value_at("speed_mps", tq)
            drop = params.value_at("pelvic_drop_deg", tq)
            rotation = params.value_at("pelvic_rotation_deg", tq)
        noise = rng.standard_normal(4)
        step = 60.0 / cadence * side_factor * (1.0 + 0.3 * cv * noise[0])
        if walking:
            contact = WALK_DUTY_FACTOR * 2.0 * 60.0 / cadence
            contact *= side_factor * (1.0 + 0.5 * cv * noise[1])
            contact = float(np.clip(contact, 1.05 * step, 1.6 * step))
        else:
            contact = (0.08 + 0.51 / speed) * side_factor * (1.0 + 0.5 * cv * noise[1])
            contact = float(np.clip(contact, 0.4 * step, 0.9 * step))
        drop = max(0.0, drop * side_factor * (1.0 + cv * noise[2]))
        rotation = max(0.0, rotation * (1.0 + cv * noise[3]))
        ics.append(t)
        rows.append((step, contact, speed, 1.0 if walking else 0.0, drop, rotation))
        t += step
        k += 1
    ic = np.asarray(ics)
    table = np.asarray(rows)
    step_s, contact_s, speed, walking_steps, drop_deg, rotation_deg = table.T
    phase = _phase_spline(ic)
    duty = (np.asarray(phase(ic + contact_s)) - np.arange(ic.size)) / 2.0
    t_first = params.standing_s + START_RAMP_S / 2.0 if params.standing_s > 0 else 0.0
    return GaitTimeline(
        ic=ic,
        right=np.arange(ic.size) % 2 == 0,
        step_s=step_s,
        contact_s=contact_s,
        speed_mps=speed,
        walking=walking_steps,
        drop_deg=drop_deg,
        rotation_deg=rotation_deg,
        duty=duty,
        t_first_event=t_first,
        standing_s=params.standing_s,
        _phase=phase,
        _drop=PchipInterpolator(ic + 0.3 * step_s, drop_deg),
        _rotation=PchipInterpolator(ic + 0.5 * step_s, rotation_deg),
        _speed=PchipInterpolator(ic + 0.5 * step_s, speed),
        _walk=PchipInterpolator(ic, walking_steps),
    )


def _phase_spline(ic: FloatArray) -> CubicSpline | PchipInterpolator:
    """C² phase through (IC_k, k); PCHIP (C¹, always monotone) if the spline would not be."""
    steps = np.arange(ic.size, dtype=np.float64)
    spline = CubicSpline(ic, steps, bc_type="natural")
    probe = np.concatenate([ic, (ic[1:] + ic[:-1]) / 2.0])
    if np.all(spline(probe, 1) > 0.0):
        return spline
    return PchipInterpolator(ic, steps)
