"""Ground truth of a simulated run, computed from the simulated trajectories.

Definitions are exactly those of design.md section 3:
- contact time: IC to toe-off of the same foot;
- flight time: toe-off to the next (contralateral) IC; negative while walking (it is then minus
  the double-support time), so one formula serves running and walking;
- cadence: 60 / (time from this IC to the next IC), steps per minute;
- contralateral pelvic drop of a stance: right stance, the largest rise of obliquity above its
  value at IC during IC → toe-off; left stance, the largest fall below it (degrees, > 0 = drop);
- pelvic rotation of a step: peak-to-peak rotation from this IC to the next IC;
- vertical oscillation: peak-to-peak height of the pelvis (sacral point) over the step, cm;
- braking: forward pelvis speed at IC minus its minimum during the stance, m/s.
Extremes are taken on a grid of 201 points per interval (error < 0.01°).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coach.sources.sim_gait import GaitTimeline
from coach.sources.sim_kinematics import RunnerKinematics
from coach.types import EventKind, FloatArray, GaitEvent, Side, Stride

GRID_POINTS = 201


@dataclass(frozen=True)
class PelvisAngleTruth:
    """Pelvic angles at the nominal sample times ``t = i / rate`` (s), degrees, design.md signs."""

    t: FloatArray
    obliquity_deg: FloatArray
    rotation_deg: FloatArray
    tilt_deg: FloatArray


def truth_events(gait: GaitTimeline, duration_s: float) -> list[GaitEvent]:
    """Initial contacts and toe-offs in [t_first_event, duration), time order, t_detected = t."""
    sides = np.where(gait.right, 0, 1)
    names = (Side.RIGHT, Side.LEFT)
    events: list[tuple[float, int, EventKind, Side]] = []
    for times, kind, order in (
        (gait.ic, EventKind.INITIAL_CONTACT, 1),
        (gait.toe_off, EventKind.TOE_OFF, 0),
    ):
        inside = (times >= gait.t_first_event) & (times < duration_s)
        for t, side in zip(times[inside], sides[inside], strict=True):
            events.append((float(t), order, kind, names[side]))
    events.sort(key=lambda e: (e[0], e[1]))
    return [GaitEvent(t, t, kind, side) for t, _, kind, side in events]


def truth_strides(
    kinematics: RunnerKinematics, gait: GaitTimeline, duration_s: float
) -> list[Stride]:
    """One Stride per complete stance (IC, its toe-off and the next IC inside the session)."""
    ic, toe_off = gait.ic, gait.toe_off
    k = np.flatnonzero(
        (ic[:-1] >= gait.t_first_event) & (ic[1:] < duration_s) & (toe_off[:-1] < duration_s)
    )
    if k.size == 0:
        return []
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    stance_t = ic[k, None] + gait.contact_s[k, None] * grid
    step_t = ic[k, None] + (ic[k + 1] - ic[k])[:, None] * grid
    stance_angles = kinematics.pelvis_angles(stance_t.ravel())
    obliquity = stance_angles.obliquity_deg.reshape(stance_t.shape)
    sign = np.where(gait.right[k], 1.0, -1.0)
    drop = np.max(sign[:, None] * (obliquity - obliquity[:, :1]), axis=1)
    rotation = kinematics.pelvis_angles(step_t.ravel()).rotation_deg.reshape(step_t.shape)
    _, _, vertical = kinematics.step_local_motion(step_t.ravel())
    vertical = vertical.reshape(step_t.shape)
    velocity = kinematics.forward_velocity_fluctuation(stance_t.ravel()).reshape(stance_t.shape)
    step = ic[k + 1] - ic[k]
    strides = []
    for row, index in enumerate(k):
        strides.append(
            Stride(
                t=float(ic[index]),
                t_detected=float(ic[index]),
                side=Side.RIGHT if gait.right[index] else Side.LEFT,
                contact_time_ms=float(1000.0 * gait.contact_s[index]),
                flight_time_ms=float(1000.0 * (ic[index + 1] - toe_off[index])),
                cadence_spm=float(60.0 / step[row]),
                pelvic_drop_deg=float(drop[row]),
                pelvic_rotation_deg=float(np.ptp(rotation[row])),
                vertical_oscillation_cm=float(100.0 * np.ptp(vertical[row])),
                braking_mps=float(velocity[row, 0] - velocity[row].min()),
            )
        )
    return strides


def truth_pelvis_angles(
    kinematics: RunnerKinematics, duration_s: float, rate_hz: float
) -> PelvisAngleTruth:
    """Pelvic angles at ``t = i / rate_hz`` for every ``t < duration_s``."""
    t = np.arange(int(np.ceil(duration_s * rate_hz))) / rate_hz
    t = t[t < duration_s]
    angles = kinematics.pelvis_angles(t)
    return PelvisAngleTruth(t, angles.obliquity_deg, angles.rotation_deg, angles.tilt_deg)
