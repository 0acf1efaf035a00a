"""Segment motion of the synthetic runner: pelvis and shank poses as functions of time.

Everything here is the truth: angles and positions evaluated at any array of times (s), from
the step timeline. Frames follow design.md section 3: world x forward (initial heading), y left,
z up; every segment's body frame x forward, y left, z up.

Pelvis (Cardan Z-X'-Y'' relative to the direction of travel, Baker 2001)::

    R_pelvis = H(heading) · Rz(rotation) · Rx(-obliquity) · Ry(tilt)

- obliquity: a contralateral drop after each contact, ``±D(t)·h(u)`` with ``u`` the position in
  the step and ``h`` a smooth shape (0 at each contact with zero slope, peak 1 at 30 % of the
  step, a negative lobe of ``OBLIQUITY_SWING_RATIO`` in late stance/flight), sign + for right
  stances. So the truth drop (max rise above the value at contact, within the stance) equals
  the target ``D`` of the stance, and obliquity swings ≈ 2.2·D peak to peak per stride, as in
  optical data (Fukuchi 2017 RBDS: 2–3° drop, 5–7° range).
- rotation: ``-R(t)·sin(πΦ)``: zero at each contact, the swing-leg side forward at mid-step,
  peak-to-peak ``R`` per step.
- tilt: twice per stride, anterior offset while running (3°, 0.5° walking).
- position: forward progression (overground) or none (treadmill); fore-aft speed fluctuation
  from a braking/propulsive half-sine pair of horizontal ground reaction force during contact;
  vertical motion of a spring-mass runner (half-sine vertical force during contact, free fall in
  flight: lowest at mid-stance, 5–9 cm peak to peak at 2.5–4 m/s; McMahon & Cheng 1990) or of
  an inverted-pendulum walker (highest at mid-stance); lateral sway toward the stance side.

Shanks: thigh and shank sagittal angles over each leg's stride (periodic cubic splines through
keypoints of running and walking kinematics: running shank from a real runner, RBDS001 of
Fukuchi et al. 2017, thigh and walking after Novacheck 1998; warped smoothly so that the
template's toe-off lands on the step's toe-off), small frontal and transverse rotations; the
sensor point hangs from the hip (on the pelvis) via the thigh and the shank, so its acceleration
contains the real centripetal and tangential terms. The foot is not pinned to the ground in
stance (documented limitation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from coach.sources.sim_gait import GaitTimeline
from coach.types import FloatArray, Side

GRAVITY = 9.81
OBLIQUITY_SWING_RATIO = 1.2
RUN_TILT_OFFSET_DEG, RUN_TILT_AMPLITUDE_DEG = 3.0, 2.5
WALK_TILT_OFFSET_DEG, WALK_TILT_AMPLITUDE_DEG = 0.5, 1.5
RUN_SWAY_M, WALK_SWAY_M = 0.03, 0.04
WALK_VERTICAL_M = 0.035
THIGH_LENGTH_M = 0.44
#: Hip joint centre in the pelvis frame (origin at the sacral sensor), m; y sign per side.
HIP_OFFSET_M = (0.10, 0.085, -0.07)
#: Shank sensor in the shank frame relative to the knee (lateral surface, mid-shank), m.
SHANK_SENSOR_OFFSET_M = (0.02, 0.045, -0.20)

# Sagittal keypoints (stride phase from IC, degrees). Shank: + when the knee is ahead of the
# ankle; thigh: + flexion (knee ahead of the hip). Running at 3 m/s with toe-off at 0.38. The
# shank curve is the stride-averaged shank angle of a real treadmill runner (RBDS001 at 2.5 m/s,
# Fukuchi et al. 2017, optical markers: integrated sagittal angular velocity, warped to this
# toe-off, divided by the 2.5 m/s speed scale, -8° at contact): the shank rotates forward
# quickly in early stance, nearly stops over the last ~80 ms of stance, then swings the foot
# back and up right after toe-off (peak ≈ 75° at 64 %), and forward again until just before
# the next contact.
RUN_DUTY = 0.38
RUN_SHANK = (
    (0.00, -8.0),
    (0.04, 0.7),
    (0.08, 10.5),
    (0.12, 18.4),
    (0.16, 24.6),
    (0.20, 28.5),
    (0.24, 30.2),
    (0.28, 31.0),
    (0.32, 31.4),
    (0.36, 31.8),
    (0.40, 33.3),
    (0.44, 38.4),
    (0.48, 47.0),
    (0.52, 56.8),
    (0.56, 66.1),
    (0.60, 72.9),
    (0.64, 75.0),
    (0.68, 71.8),
    (0.72, 63.7),
    (0.76, 52.2),
    (0.80, 38.1),
    (0.84, 22.9),
    (0.88, 8.1),
    (0.92, -4.2),
    (0.96, -10.3),
)
RUN_THIGH = (
    (0.0, 25),
    (0.15, 15),
    (0.30, 0),
    (0.38, -8),
    (0.48, -10),
    (0.60, 5),
    (0.72, 30),
    (0.85, 42),
    (0.93, 35),
)
WALK_DUTY = 0.62
WALK_SHANK = (
    (0.0, -16),
    (0.10, -11),
    (0.30, 2),
    (0.50, 20),
    (0.62, 34),
    (0.70, 38),
    (0.80, 26),
    (0.90, -5),
    (0.96, -18),
)
WALK_THIGH = ((0.0, 22), (0.30, 5), (0.55, -10), (0.62, -6), (0.75, 15), (0.87, 27), (0.95, 24))


def _periodic(keypoints: tuple[tuple[float, float], ...]) -> CubicSpline:
    phase = [p for p, _ in keypoints] + [1.0]
    value = [v for _, v in keypoints] + [keypoints[0][1]]
    return CubicSpline(phase, np.radians(value), bc_type="periodic")


_RUN_SHANK, _RUN_THIGH = _periodic(RUN_SHANK), _periodic(RUN_THIGH)
_WALK_SHANK, _WALK_THIGH = _periodic(WALK_SHANK), _periodic(WALK_THIGH)


def _obliquity_shape() -> tuple[float, float]:
    """(beta, scale) of h(u) = scale·sin²(πu)·(cos πu − beta): max 1, min −SWING_RATIO."""
    u = np.linspace(0.0, 1.0, 4001)
    low, high = -0.5, 0.5
    for _ in range(60):
        beta = (low + high) / 2.0
        h = np.sin(np.pi * u) ** 2 * (np.cos(np.pi * u) - beta)
        if -h.min() / h.max() > OBLIQUITY_SWING_RATIO:
            high = beta
        else:
            low = beta
    h = np.sin(np.pi * u) ** 2 * (np.cos(np.pi * u) - beta)
    return beta, 1.0 / float(h.max())


_OBLIQUITY_BETA, _OBLIQUITY_SCALE = _obliquity_shape()


def obliquity_shape(u: FloatArray) -> FloatArray:
    """Obliquity shape over one step (u from 0 at IC to 1 at the next IC): max 1 at u ≈ 0.3."""
    s = np.sin(np.pi * u)
    return _OBLIQUITY_SCALE * s * s * (np.cos(np.pi * u) - _OBLIQUITY_BETA)


def rot_x(a: FloatArray) -> FloatArray:
    """Rotation matrices about x by angles ``a`` (rad), shape (n, 3, 3)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], axis=-1).reshape(-1, 3, 3)


def rot_y(a: FloatArray) -> FloatArray:
    """Rotation matrices about y by angles ``a`` (rad), shape (n, 3, 3)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], axis=-1).reshape(-1, 3, 3)


def rot_z(a: FloatArray) -> FloatArray:
    """Rotation matrices about z by angles ``a`` (rad), shape (n, 3, 3)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], axis=-1).reshape(-1, 3, 3)


@dataclass(frozen=True)
class PelvisAngles:
    """Pelvic angles relative to the direction of travel, degrees, design.md signs.

    Obliquity > 0: right side higher; rotation > 0: turned left; tilt > 0: anterior.
    """

    obliquity_deg: FloatArray
    rotation_deg: FloatArray
    tilt_deg: FloatArray


@dataclass(frozen=True)
class Pose:
    """Orientation (body to world, (n, 3, 3)) and position (world, m, (n, 3)) of a point."""

    rotation: FloatArray
    position: FloatArray


class RunnerKinematics:
    """The runner's segment motion, evaluated at any times (s)."""

    def __init__(self, gait: GaitTimeline, heading: HeadingPath, treadmill: bool) -> None:
        self.gait = gait
        self.heading = heading
        self.treadmill = treadmill

    def pelvis_angles(self, t: FloatArray) -> PelvisAngles:
        """Truth pelvic angles (degrees) at times ``t``."""
        g = self.gait
        phase = g.phase(t)
        envelope = g.envelope(t)
        walk = g.walk_weight(t)
        step = np.floor(phase)
        sign = np.where(np.mod(step, 2.0) == 0.0, 1.0, -1.0)
        obliquity = envelope * g.drop_amplitude_deg(t) * sign * obliquity_shape(phase - step)
        rotation = -envelope * g.rotation_amplitude_deg(t) * np.sin(np.pi * phase)
        offset = (1 - walk) * RUN_TILT_OFFSET_DEG + walk * WALK_TILT_OFFSET_DEG
        amplitude = (1 - walk) * RUN_TILT_AMPLITUDE_DEG + walk * WALK_TILT_AMPLITUDE_DEG
        tilt = envelope * (offset - amplitude * np.cos(2.0 * np.pi * (phase - 0.2)))
        return PelvisAngles(obliquity, rotation, tilt)

    def pelvis_rotation_matrix(self, t: FloatArray, angles: PelvisAngles) -> FloatArray:
        """Body-to-world rotation of the pelvis, (n, 3, 3)."""
        yaw = self.heading(t) + np.radians(angles.rotation_deg)
        return (
            rot_z(yaw)
            @ rot_x(-np.radians(angles.obliquity_deg))
            @ rot_y(np.radians(angles.tilt_deg))
        )

    def step_local_motion(self, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Fore-aft, lateral and vertical pelvis displacement about the mean motion, m."""
        g = self.gait
        k = g.step_index(t)
        period = g.step_s[k]
        u = np.clip((t - g.ic[k]) / period, 0.0, 1.0)
        walking = g.walk_weight(t)
        is_walk = g.walking[k] > 0.5
        duty = np.minimum(g.contact_s[k] / period, np.where(is_walk, 1.0, 0.9))
        envelope = g.envelope(t)
        vertical_run = GRAVITY * period**2 * _spring_mass_height(u, duty)
        vertical_walk = WALK_VERTICAL_M / 2.0 * (1.0 - np.cos(2.0 * np.pi * u))
        vertical = envelope * np.where(is_walk, vertical_walk, vertical_run)
        braking = np.where(is_walk, 1.5, 1.4 * g.speed_mps[k])
        fore_aft = envelope * _braking_displacement(u, duty, period, braking)
        sway_amplitude = (1 - walking) * RUN_SWAY_M + walking * WALK_SWAY_M
        lateral = -envelope * sway_amplitude / 2.0 * np.sin(np.pi * g.phase(t))
        return fore_aft, lateral, vertical

    def forward_velocity_fluctuation(self, t: FloatArray) -> FloatArray:
        """Fore-aft pelvis velocity about the mean speed, m/s (truth for braking)."""
        g = self.gait
        k = g.step_index(t)
        period = g.step_s[k]
        u = np.clip((t - g.ic[k]) / period, 0.0, 1.0)
        is_walk = g.walking[k] > 0.5
        duty = np.minimum(g.contact_s[k] / period, np.where(is_walk, 1.0, 0.9))
        braking = np.where(is_walk, 1.5, 1.4 * g.speed_mps[k])
        stance = u < duty
        wave = braking * period * duty / (2 * np.pi) * (np.cos(2 * np.pi * u / duty) - 1.0)
        offset = braking * period * duty**2 / (2 * np.pi)
        velocity = g.envelope(t) * (np.where(stance, wave, 0.0) + offset)
        return np.asarray(velocity, dtype=np.float64)

    def pelvis_pose(self, t: FloatArray, mean_position: FloatArray) -> tuple[Pose, PelvisAngles]:
        """Pelvis (sacral sensor point) pose; ``mean_position`` is the progression, (n, 3)."""
        angles = self.pelvis_angles(t)
        rotation = self.pelvis_rotation_matrix(t, angles)
        fore_aft, lateral, vertical = self.step_local_motion(t)
        heading = self.heading(t)
        c, s = np.cos(heading), np.sin(heading)
        position = mean_position.copy()
        position[:, 0] += c * fore_aft - s * lateral
        position[:, 1] += s * fore_aft + c * lateral
        position[:, 2] += vertical
        return Pose(rotation, position), angles

    def shank_pose(self, t: FloatArray, side: Side, pelvis: Pose, angles: PelvisAngles) -> Pose:
        """Pose of the shank sensor point of one leg, given the pelvis pose at the same times."""
        g = self.gait
        parity = 0.0 if side is Side.RIGHT else 1.0
        half = (g.phase(t) - parity) / 2.0
        stride = np.floor(half)
        psi = half - stride
        k = np.clip((2 * stride + parity).astype(np.intp), 0, g.ic.size - 1)
        duty = g.duty[k]
        walk = g.walk_weight(t)
        envelope = g.envelope(t)
        scale = np.clip(0.55 + 0.15 * g.speed(t) / np.maximum(envelope, 1e-9), 0.7, 1.4)
        run_phase = _warp(psi, duty, RUN_DUTY)
        walk_phase = _warp(psi, duty, WALK_DUTY)
        shank = envelope * (
            (1 - walk) * scale * _RUN_SHANK(run_phase) + walk * _WALK_SHANK(walk_phase)
        )
        thigh = envelope * (
            (1 - walk) * scale * _RUN_THIGH(run_phase) + walk * _WALK_THIGH(walk_phase)
        )
        lateral = 1.0 if side is Side.LEFT else -1.0
        frontal = envelope * np.radians(3.0) * np.sin(2 * np.pi * psi + 0.5) * lateral
        pelvis_yaw = np.radians(angles.rotation_deg)
        transverse = pelvis_yaw + envelope * np.radians(4.0) * np.sin(2 * np.pi * psi) * lateral
        heading = self.heading(t)
        rotation = rot_z(heading + transverse) @ rot_x(frontal) @ rot_y(shank)
        hip_offset = np.array([HIP_OFFSET_M[0], lateral * HIP_OFFSET_M[1], HIP_OFFSET_M[2]])
        hip = pelvis.position + pelvis.rotation @ hip_offset
        thigh_local = np.stack(
            [THIGH_LENGTH_M * np.sin(thigh), np.zeros_like(thigh), -THIGH_LENGTH_M * np.cos(thigh)],
            axis=-1,
        )
        knee = hip + (rot_z(heading + pelvis_yaw) @ thigh_local[:, :, None])[:, :, 0]
        sensor_offset = np.array(
            [SHANK_SENSOR_OFFSET_M[0], lateral * SHANK_SENSOR_OFFSET_M[1], SHANK_SENSOR_OFFSET_M[2]]
        )
        return Pose(rotation, knee + rotation @ sensor_offset)


def _warp(psi: FloatArray, duty: FloatArray, template_duty: float) -> FloatArray:
    """Map stride phase so the step's toe-off (at ``duty``) lands on the template's toe-off.

    Piecewise cubic Hermite (stance, swing) with unit slope at contact and the harmonic mean of
    the two secant slopes at toe-off: the map and its rate are continuous, also from one stride
    to the next (whose duty differs), so segment angular velocity has no jump at contact or
    toe-off; every slope is within 3× its secant, so the map is monotone (Fritsch & Carlson
    1980).
    """
    duty = np.clip(duty, 0.05, 0.95)
    stance_secant = template_duty / duty
    swing_secant = (1.0 - template_duty) / (1.0 - duty)
    slope_to = 2.0 * stance_secant * swing_secant / (stance_secant + swing_secant)
    in_stance = psi < duty
    x0 = np.where(in_stance, 0.0, duty)
    width = np.where(in_stance, duty, 1.0 - duty)
    y0 = np.where(in_stance, 0.0, template_duty)
    rise = np.where(in_stance, template_duty, 1.0 - template_duty)
    slope0 = np.where(in_stance, 1.0, slope_to) * width
    slope1 = np.where(in_stance, slope_to, 1.0) * width
    x = np.clip((psi - x0) / width, 0.0, 1.0)
    h01 = x * x * (3.0 - 2.0 * x)
    h10 = x * (1.0 - x) ** 2
    h11 = x * x * (x - 1.0)
    return np.asarray(y0 + rise * h01 + slope0 * h10 + slope1 * h11, dtype=np.float64)


def _spring_mass_height(u: FloatArray, duty: FloatArray) -> FloatArray:
    """Height over one step in units of g·T² (0 at contact), half-sine vertical force in stance.

    Force/weight = π/(2c)·sin(πu/c) for u < c (mean 1 over the step), 0 in flight (free fall);
    the initial vertical velocity −(1 − c)/2 (units g·T) makes the motion periodic.
    """
    v0 = -(1.0 - duty) / 2.0
    stance = v0 * u + 0.5 * (u - duty / np.pi * np.sin(np.pi * u / duty)) - u * u / 2.0
    z_c = v0 * duty + duty / 2.0 - duty * duty / 2.0
    v_c = v0 + 1.0 - duty
    flight = z_c + v_c * (u - duty) - (u - duty) ** 2 / 2.0
    return np.where(u < duty, stance, flight)


def _braking_displacement(
    u: FloatArray, duty: FloatArray, period: FloatArray, braking: FloatArray
) -> FloatArray:
    """Fore-aft displacement (m) from a braking-then-propulsive force ``-A·sin(2πu/c)`` in stance.

    ``braking`` is the peak horizontal deceleration A, m/s²; zero mean velocity over the step.
    """
    offset = braking * period * duty**2 / (2 * np.pi)
    amplitude = braking * period * duty / (2 * np.pi)
    stance_u = np.minimum(u, duty)
    within = amplitude * (duty / (2 * np.pi) * np.sin(2 * np.pi * stance_u / duty) - stance_u)
    return period * (within + offset * u)


class HeadingPath:
    """Direction of travel (rad, counter-clockwise from the initial heading) over time."""

    def __init__(self, amplitudes: FloatArray, periods_s: FloatArray, phases: FloatArray) -> None:
        self.amplitudes = amplitudes
        self.periods_s = periods_s
        self.phases = phases

    @classmethod
    def fixed(cls) -> HeadingPath:
        """A treadmill: constant heading."""
        empty = np.zeros(0)
        return cls(empty, empty, empty)

    @classmethod
    def wandering(cls, rng: np.random.Generator) -> HeadingPath:
        """Overground: two slow sinusoids, ±15–25° over 1–5 min (yaw rate < 0.05 rad/s)."""
        return cls(
            np.radians(rng.uniform(15.0, 25.0, 2)),
            rng.uniform(60.0, 300.0, 2),
            rng.uniform(0.0, 2 * np.pi, 2),
        )

    def __call__(self, t: FloatArray) -> FloatArray:
        """Heading at times ``t``, rad (0 at t = 0)."""
        out = np.zeros_like(t)
        for a, p, ph in zip(self.amplitudes, self.periods_s, self.phases, strict=True):
            out += a * (np.sin(2 * np.pi * t / p + ph) - np.sin(ph))
        return out
