"""Pelvis orientation and pelvic angles relative to the direction of travel.

Pipeline per sample (design.md section 3):

1. Orientation of the sensor in an Earth frame (z up, drifting heading) with VQF, the 6D
   (no magnetometer) filter with gyroscope bias estimation (Laidig & Seel 2023, Information
   Fusion 91:187–204), run sample by sample in C (``VQF.updateBatch``).
2. Mount rotation sensor→body from :class:`~coach.stream.mount.MountCalibrator`
   (vertical = standing posture if a standing period was seen, else the mean running posture;
   forward = direction of travel from the gait's braking/propulsion pattern).
3. Heading = yaw of the body's forward axis, unwrapped and low-passed (2nd-order Butterworth,
   ``heading_hz``): the mean direction of travel. It follows the 6D yaw drift and real turns; the
   rotation angle is measured from it. A heading error only offsets the rotation angle (the
   Z-X'-Y'' obliquity and tilt do not depend on it).
4. ``R_rel = Rz(-heading) · R_sensor→earth · M^T`` decomposed as Cardan Z-X'-Y'' (Baker 2001):
   ``R_rel = Rz(rotation) · Rx(-obliquity) · Ry(tilt)``: obliquity > 0 when the RIGHT side is
   higher, rotation > 0 when turned LEFT, tilt > 0 anterior.
5. Turning. The heading filter lags the direction of travel by ~2 s, so during and just after a
   turn the rotation angle carries the turn itself (up to ~140° in a U-turn). The wearer is
   ``turning`` while the yaw rate, low-passed at ``TURN_HZ`` (below the stride frequency, which
   removes the pelvis's own rotation oscillation), exceeds ``TURN_RATE_DEG_S`` (a 90° corner in
   under ~4 s; a 400-m track bend at 6 m/s stays below it), or while the yaw is more than
   ``TURN_OFFSET_DEG`` away from the heading (beyond the ±5–10° of the pelvis's own rotation:
   the turn has begun, or the heading is still catching up after it), and for ``TURN_HOLD_S``
   afterwards. Rotation is invalid (NaN) while turning, and so is
   ``valid`` (per-stance metrics); obliquity and tilt are not: with the Z-X'-Y'' sequence they are
   taken from the z row of ``R_rel``, which ``Rz(-heading)`` leaves unchanged, so they do not
   depend on the heading at all (``obliquity_valid``).

Zero of the angles: tilt and obliquity are zero in the standing posture when the wearer stood
still for ``MountSettings.standing_s`` (first such period); otherwise zero is the mean posture
over the gait cycles so far (slow mean, ~20 s). Rotation is zero when facing the direction of
travel.

Vertical signals: vertical acceleration (Earth frame from VQF; without gyroscope the mean
vertical of the mount calibration) integrated once / twice through 2nd / 4th-order Butterworth
high-pass filters (``vertical_hp_hz``), for vertical oscillation.

Pure streaming: all filters carry their state across blocks (chunking invariant, bit-identical),
memory O(1). The per-block work is a fixed number of vectorised numpy operations and compiled
filter calls (see :func:`coach.stream.mount.sos_filter_inplace`), so a live block of a few samples
costs a fraction of a millisecond. A data gap (time jump) restarts VQF (keeping its gyro bias
estimate), the heading and the vertical filters; the angles are invalid until the heading has
run for half of ``DetectionConfig.calibration_s`` (also after the first mount calibration). On
rbds001 the first valid sample is at ~6 s (4 s of moving data for the mount, 2 s for the
heading).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import bilinear_zpk, butter, sosfilt_zi, zpk2sos
from vqf import VQF

from coach.config import DetectionConfig
from coach.stream.mount import (
    GAP_SAMPLES,
    STANDARD_GRAVITY,
    MountCalibrator,
    MountPieces,
    dot3,
    norm3,
    sos_filter_inplace,
)
from coach.types import FloatArray, SampleBlock

BoolArray = NDArray[np.bool_]

HEADING_HZ = 0.1  # cut-off of the heading low-pass, Hz (stride frequency ≥ 0.7 Hz)
VERTICAL_HP_HZ = 0.3  # high-pass of the vertical integration, Hz (step frequency ≥ 1.4 Hz)
TURN_HZ = 0.4  # low-pass of the yaw rate for turn detection, Hz (below stride frequency)
TURN_RATE_DEG_S = 20.0  # low-passed yaw rate above which the wearer is turning, °/s
TURN_OFFSET_DEG = 25.0  # yaw this far from the heading: turning, or heading catching up, °
TURN_HOLD_S = 0.5  # turning lasts this long after the conditions clear, s
_TWO_PI = 2.0 * np.pi


@dataclass(frozen=True, slots=True)
class PelvisAngles:
    """Pelvic angles and vertical motion for the samples of one block (all shape (n,)).

    Attributes:
        t: session time, s.
        obliquity_deg: > 0 when the right side of the pelvis is higher, degrees (NaN where not
            ``obliquity_valid``).
        rotation_deg: > 0 when turned to the left of the direction of travel, degrees (NaN
            where not ``valid``).
        tilt_deg: > 0 anterior, degrees (NaN where not ``obliquity_valid``).
        valid: all three angles usable (per-stance drop and rotation): obliquity_valid and not
            turning.
        obliquity_valid: obliquity and tilt usable: gyroscope present, mount calibrated, heading
            settled, no recent gap (independent of the heading, so also while turning).
        turning: the wearer is turning (or the heading is still catching up after a turn);
            rotation is then invalid.
        vertical_velocity_mps: high-pass integrated vertical velocity, m/s (up positive).
        vertical_position_m: high-pass double-integrated vertical position, m (up positive).
        forward_velocity_mps: high-pass integrated speed change along the direction of travel,
            m/s (NaN without gyroscope); its drop after a contact is the braking.
        mount_changed: a slipped mount was detected at this sample (calibration restarts).

    """

    t: FloatArray
    obliquity_deg: FloatArray
    rotation_deg: FloatArray
    tilt_deg: FloatArray
    valid: BoolArray
    obliquity_valid: BoolArray
    turning: BoolArray
    vertical_velocity_mps: FloatArray
    vertical_position_m: FloatArray
    mount_changed: BoolArray
    forward_velocity_mps: FloatArray


def quaternion_to_matrix(q: FloatArray) -> FloatArray:
    """Rotation matrices (n, 3, 3) from unit quaternions (n, 4) in [w, x, y, z] order."""
    return np.moveaxis(_matrices(np.ascontiguousarray(q.T)), -1, 0)


def _matrices(q: FloatArray) -> FloatArray:
    """Rotation matrices (3, 3, n) from unit quaternions (4, n) [w, x, y, z], in a fixed order.

    ``R = (2w² - 1) I + 2 u uᵀ + 2 w [u]×`` with ``u = (x, y, z)``.
    """
    q2 = 2.0 * q
    r = q2[1:, None, :] * q[None, 1:, :]  # 2 u uᵀ, (3, 3, n)
    w_u = q2[0] * q[1:]  # 2w·(x, y, z)
    diagonal = q2[0] * q[0] - 1.0
    r[0, 0] += diagonal
    r[1, 1] += diagonal
    r[2, 2] += diagonal
    r[0, 1] -= w_u[2]
    r[1, 0] += w_u[2]
    r[1, 2] -= w_u[0]
    r[2, 1] += w_u[0]
    r[2, 0] -= w_u[1]
    r[0, 2] += w_u[1]
    return r


def cardan_zxy_deg(rel: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(obliquity, rotation, tilt) in degrees of ``rel = Rz(rot) · Rx(-obl) · Ry(tilt)``.

    ``rel`` has shape (n, 3, 3): body axes (columns) in the travel frame (x forward, z up).
    """
    obliquity = -np.degrees(np.arcsin(np.clip(rel[:, 2, 1], -1.0, 1.0)))
    rotation = np.degrees(np.arctan2(-rel[:, 0, 1], rel[:, 1, 1]))
    tilt = np.degrees(np.arctan2(-rel[:, 2, 0], rel[:, 2, 2]))
    return obliquity, rotation, tilt


def _integrating_highpass(
    order: int, integrations: int, cutoff_hz: float, rate_hz: float
) -> FloatArray:
    """SOS of ``HP_order(s) / s**integrations`` (Butterworth), by the bilinear transform."""
    zeros, poles, gain = butter(order, 2 * np.pi * cutoff_hz, "highpass", analog=True, output="zpk")
    zeros = zeros[integrations:]
    z, p, k = bilinear_zpk(zeros, poles, gain, rate_hz)
    sos: FloatArray = zpk2sos(z, p, k)
    return sos


def _wrap(angle: FloatArray) -> FloatArray:
    """Angles wrapped to [-π, π), rad."""
    out: FloatArray = np.remainder(angle + np.pi, _TWO_PI) - np.pi
    return out


class PelvisTracker:
    """Streaming pelvic angles (and vertical motion) from a pelvis IMU in any mount orientation.

    Args:
        rate_hz: sample rate of the blocks, Hz.
        config: detection parameters (``calibration_s``: moving time before the mount is
            trusted; half of it is the heading settle time, after calibration and gaps).

    """

    def __init__(self, rate_hz: float, config: DetectionConfig | None = None) -> None:
        if not rate_hz > 0.0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.config = config or DetectionConfig()
        self._sos_heading = butter(2, HEADING_HZ, "lowpass", fs=self.rate_hz, output="sos")
        self._sos_turn = butter(2, TURN_HZ, "lowpass", fs=self.rate_hz, output="sos")
        self._zi_unit_heading = sosfilt_zi(self._sos_heading)
        self._zi_unit_turn = sosfilt_zi(self._sos_turn)
        self._sos_velocity = _integrating_highpass(2, 1, VERTICAL_HP_HZ, self.rate_hz)
        self._sos_position = _integrating_highpass(4, 2, VERTICAL_HP_HZ, self.rate_hz)
        self._settle_n = round(0.5 * self.config.calibration_s * self.rate_hz)
        self._turn_rate = np.radians(TURN_RATE_DEG_S)
        self._turn_offset = np.radians(TURN_OFFSET_DEG)
        self._mount = MountCalibrator(self.rate_hz, self.config)
        self._vqf = VQF(1.0 / self.rate_hz)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new session)."""
        self._mount.reset()
        self._vqf.resetState()
        self._vqf_started = False
        self._last_t: float | None = None
        self._restart_segment()

    def _restart_segment(self) -> None:
        """After a gap: restart heading and vertical filters (slow calibration is kept)."""
        self._restart_heading()
        self._last_turn_t = -np.inf
        self._zi_velocity = np.zeros((1, self._sos_velocity.shape[0], 2))
        self._zi_position = np.zeros((1, self._sos_position.shape[0], 2))
        self._zi_forward = np.zeros((1, self._sos_velocity.shape[0], 2))

    def _restart_heading(self) -> None:
        self._zi_heading: FloatArray | None = None  # (1, sections, 2)
        self._zi_turn = np.zeros((2, self._sos_turn.shape[0], 2))  # low-passed yaw, yaw rate
        self._yaw_raw = 0.0
        self._yaw_unwrapped = 0.0
        self._heading_age = 0

    def update(self, block: SampleBlock) -> PelvisAngles:
        """Process a block; per-sample angles and vertical motion for its samples."""
        parts: list[PelvisAngles] = []
        start = 0
        max_step = GAP_SAMPLES / self.rate_hz
        for t, piece in self._mount.pieces(block):
            stop = start + t.shape[0]
            if self._last_t is not None and t[0] - self._last_t > max_step:
                self._restart_segment()
                self._restart_vqf()
            gyr = None if block.gyr is None else block.gyr[start:stop]
            parts.append(self._segment(t, block.acc[start:stop], gyr, piece))
            self._last_t = float(t[-1])
            start = stop
        if len(parts) == 1:
            return parts[0]
        if not parts:
            empty, none = np.zeros(0), np.zeros(0, bool)
            return PelvisAngles(
                empty, empty, empty, empty, none, none, none, empty, empty, none, empty
            )
        return PelvisAngles(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in PelvisAngles.__slots__)
        )

    def _restart_vqf(self) -> None:
        if not self._vqf_started:
            return
        bias, sigma = self._vqf.getBiasEstimate()
        self._vqf.resetState()
        self._vqf.setBiasEstimate(np.ascontiguousarray(bias, dtype=float), float(sigma))

    def _segment(
        self, t: FloatArray, acc: FloatArray, gyr: FloatArray | None, mount: MountPieces
    ) -> PelvisAngles:
        n = t.shape[0]
        changed = np.zeros(n, bool)
        if mount.change_at is not None:
            changed[mount.change_at] = True
        if gyr is None:
            up = mount.vertical[mount.group]
            vertical_acc = dot3(acc, up) - np.where(norm3(up) > 0, STANDARD_GRAVITY, 0.0)
            velocity, position = self._vertical(vertical_acc)
            nan, none = np.full(n, np.nan), np.zeros(n, bool)
            return PelvisAngles(
                t,
                nan,
                nan.copy(),
                nan.copy(),
                none,
                none,
                none,
                velocity,
                position,
                changed,
                nan.copy(),
            )
        quat = self._vqf.updateBatch(
            np.ascontiguousarray(gyr, dtype=float), np.ascontiguousarray(acc, dtype=float)
        )["quat6D"]
        self._vqf_started = True
        sensor_to_earth = _matrices(quat.T)  # (3, 3, n)
        vertical_acc = (
            sensor_to_earth[2, 0] * acc[:, 0]
            + sensor_to_earth[2, 1] * acc[:, 1]
            + sensor_to_earth[2, 2] * acc[:, 2]
        ) - STANDARD_GRAVITY
        velocity, position = self._vertical(vertical_acc)
        # body→earth = sensor→earth · Mᵀ, with M per sample (held between mount updates)
        group = mount.group
        if group[0] == group[-1]:
            m = mount.rotation[group[0]][:, :, None]  # (3, 3, 1)
        else:
            m = mount.rotation[group].transpose(1, 2, 0)  # (3, 3, n)
        r = sensor_to_earth
        b2e = (
            r[:, None, 0] * m[None, :, 0]
            + r[:, None, 1] * m[None, :, 1]
            + r[:, None, 2] * m[None, :, 2]
        )
        yaw = np.arctan2(b2e[1, 0], b2e[0, 0])
        calibrated = mount.calibrated[group]
        heading, settled, turning = self._heading(t, yaw, calibrated)
        forward_acc = np.cos(heading) * (
            r[0, 0] * acc[:, 0] + r[0, 1] * acc[:, 1] + r[0, 2] * acc[:, 2]
        ) + np.sin(heading) * (r[1, 0] * acc[:, 0] + r[1, 1] * acc[:, 1] + r[1, 2] * acc[:, 2])
        forward_velocity = np.array(forward_acc[None, :], dtype=float, order="C")
        sos_filter_inplace(self._sos_velocity, forward_velocity, self._zi_forward)
        obliquity_valid = calibrated & settled
        valid = obliquity_valid & ~turning
        obliquity = -np.degrees(np.arcsin(np.minimum(np.maximum(b2e[2, 1], -1.0), 1.0)))
        rotation = np.degrees(_wrap(np.arctan2(-b2e[0, 1], b2e[1, 1]) - heading))
        tilt = np.degrees(np.arctan2(-b2e[2, 0], b2e[2, 2]))
        if not valid.all():
            obliquity[~obliquity_valid] = np.nan
            tilt[~obliquity_valid] = np.nan
            rotation[~valid] = np.nan
        return PelvisAngles(
            t,
            obliquity,
            rotation,
            tilt,
            valid,
            obliquity_valid,
            turning,
            velocity,
            position,
            changed,
            forward_velocity[0],
        )

    def _vertical(self, vertical_acc: FloatArray) -> tuple[FloatArray, FloatArray]:
        velocity = np.array(vertical_acc[None, :], dtype=float, order="C")
        position = velocity.copy()
        sos_filter_inplace(self._sos_velocity, velocity, self._zi_velocity)
        sos_filter_inplace(self._sos_position, position, self._zi_position)
        return velocity[0], position[0]

    def _heading(
        self, t: FloatArray, yaw: FloatArray, calibrated: BoolArray
    ) -> tuple[FloatArray, BoolArray, BoolArray]:
        """Per sample: heading (rad), settled, turning; over runs of calibrated samples."""
        n = yaw.shape[0]
        if calibrated.all():
            bounds = [0, n]
        elif not calibrated.any():
            self._restart_heading()
            return np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        else:
            edges = np.flatnonzero(calibrated[1:] != calibrated[:-1]) + 1
            bounds = [0, *edges.tolist(), n]
        heading = np.zeros(n)
        settled = np.zeros(n, bool)
        turn_t = np.full(n, -np.inf)
        for a, b in itertools.pairwise(bounds):
            if not calibrated[a]:
                self._restart_heading()
                continue
            heading[a:b], settled[a:b], turn_t[a:b] = self._heading_run(t[a:b], yaw[a:b])
        turn_t[0] = max(turn_t[0], self._last_turn_t)
        last_turn = np.maximum.accumulate(turn_t)
        self._last_turn_t = float(last_turn[-1])
        turning = (t - last_turn <= TURN_HOLD_S) & calibrated
        return heading, settled, turning

    def _heading_run(
        self, t: FloatArray, yaw: FloatArray
    ) -> tuple[FloatArray, BoolArray, FloatArray]:
        """One run of calibrated samples: heading, settled, time where a turn condition holds."""
        n = yaw.shape[0]
        if self._zi_heading is None:
            self._yaw_raw = self._yaw_unwrapped = float(yaw[0])
            self._zi_heading = self._zi_unit_heading[None] * self._yaw_unwrapped
            self._zi_turn[0] = self._zi_unit_turn * self._yaw_unwrapped
        step = np.empty(n)
        step[0] = yaw[0] - self._yaw_raw
        np.subtract(yaw[1:], yaw[:-1], out=step[1:])
        step = _wrap(step)
        turn = np.empty((2, n))  # unwrapped yaw, yaw rate (the latter then low-passed)
        np.multiply(step, self.rate_hz, out=turn[1])
        # cumulative sum seeded with the carried value: same additions whatever the blocks
        step[0] += self._yaw_unwrapped
        np.add.accumulate(step, out=turn[0])
        heading = turn[0][None].copy()
        sos_filter_inplace(self._sos_heading, heading, self._zi_heading)
        self._yaw_raw = float(yaw[-1])
        self._yaw_unwrapped = float(turn[0, -1])
        lagging = np.abs(turn[0] - heading[0]) > self._turn_offset
        sos_filter_inplace(self._sos_turn, turn, self._zi_turn)
        turn_now = lagging | (np.abs(turn[1]) > self._turn_rate)
        if self._heading_age >= self._settle_n:
            settled = np.ones(n, bool)
        else:
            settled = self._heading_age + np.arange(1, n + 1) >= self._settle_n
        self._heading_age += n
        return heading[0], settled, np.where(turn_now, t, -np.inf)
