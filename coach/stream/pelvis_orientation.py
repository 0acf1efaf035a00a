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

Zero of the angles: tilt and obliquity are zero in the standing posture when the wearer stood
still for ``MountSettings.standing_s`` (first such period); otherwise zero is the mean posture
over the gait cycles so far (slow mean, ~20 s). Rotation is zero when facing the direction of
travel.

Vertical signals: vertical acceleration (Earth frame from VQF; without gyroscope the mean
vertical of the mount calibration) integrated once / twice through 2nd / 4th-order Butterworth
high-pass filters (``vertical_hp_hz``), for vertical oscillation.

Pure streaming: all filters carry their state across blocks (chunking invariant, bit-identical),
memory O(1). A data gap (time jump) restarts VQF (keeping its gyro bias estimate), the heading
and the vertical filters; the angles are invalid until the heading has run for half of
``DetectionConfig.calibration_s`` (also after the first mount calibration). On rbds001 the first
valid sample is at ~6 s (4 s of moving data for the mount, 2 s for the heading).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import bilinear_zpk, butter, sosfilt, sosfilt_zi, zpk2sos
from vqf import VQF

from coach.config import DetectionConfig
from coach.stream.mount import (
    GAP_SAMPLES,
    STANDARD_GRAVITY,
    MountCalibrator,
    MountTrack,
    dot3,
    norm3,
)
from coach.types import FloatArray, SampleBlock

BoolArray = NDArray[np.bool_]

HEADING_HZ = 0.1  # cut-off of the heading low-pass, Hz (stride frequency ≥ 0.7 Hz)
VERTICAL_HP_HZ = 0.3  # high-pass of the vertical integration, Hz (step frequency ≥ 1.4 Hz)


@dataclass(frozen=True, slots=True)
class PelvisAngles:
    """Pelvic angles and vertical motion for the samples of one block (all shape (n,)).

    Attributes:
        t: session time, s.
        obliquity_deg: > 0 when the right side of the pelvis is higher, degrees (NaN if invalid).
        rotation_deg: > 0 when turned to the left of the direction of travel, degrees (NaN if
            invalid).
        tilt_deg: > 0 anterior, degrees (NaN if invalid).
        valid: angles usable: gyroscope present, mount calibrated, heading settled, no recent gap.
        vertical_velocity_mps: high-pass integrated vertical velocity, m/s (up positive).
        vertical_position_m: high-pass double-integrated vertical position, m (up positive).
        mount_changed: a slipped mount was detected at this sample (calibration restarts).

    """

    t: FloatArray
    obliquity_deg: FloatArray
    rotation_deg: FloatArray
    tilt_deg: FloatArray
    valid: BoolArray
    vertical_velocity_mps: FloatArray
    vertical_position_m: FloatArray
    mount_changed: BoolArray


def quaternion_to_matrix(q: FloatArray) -> FloatArray:
    """Rotation matrices (n, 3, 3) from unit quaternions (n, 4) in [w, x, y, z] order."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


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
        self._sos_velocity = _integrating_highpass(2, 1, VERTICAL_HP_HZ, self.rate_hz)
        self._sos_position = _integrating_highpass(4, 2, VERTICAL_HP_HZ, self.rate_hz)
        self._settle_n = round(0.5 * self.config.calibration_s * self.rate_hz)
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
        self._heading_zi: FloatArray | None = None
        self._yaw_raw = 0.0
        self._yaw_unwrapped = 0.0
        self._heading_age = 0
        self._zi_velocity = np.zeros((self._sos_velocity.shape[0], 2))
        self._zi_position = np.zeros((self._sos_position.shape[0], 2))

    def update(self, block: SampleBlock) -> PelvisAngles:
        """Process a block; per-sample angles and vertical motion for its samples."""
        mount = self._mount.track(block)
        n = len(block)
        parts: list[PelvisAngles] = []
        start = 0
        while start < n:
            gap = self._last_t is not None and (
                block.t[start] - self._last_t > GAP_SAMPLES / self.rate_hz
            )
            if gap:
                self._restart_segment()
                self._restart_vqf()
            jumps = np.flatnonzero(np.diff(block.t[start:]) > GAP_SAMPLES / self.rate_hz)
            stop = start + int(jumps[0]) + 1 if jumps.size else n
            parts.append(self._segment(block.slice(start, stop), _slice_track(mount, start, stop)))
            self._last_t = float(block.t[stop - 1])
            start = stop
        if not parts:
            empty = np.zeros(0)
            return PelvisAngles(
                empty, empty, empty, empty, np.zeros(0, bool), empty, empty, np.zeros(0, bool)
            )
        if len(parts) == 1:
            return parts[0]
        return PelvisAngles(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in PelvisAngles.__slots__)
        )

    def _restart_vqf(self) -> None:
        if not self._vqf_started:
            return
        bias, sigma = self._vqf.getBiasEstimate()
        self._vqf.resetState()
        self._vqf.setBiasEstimate(np.ascontiguousarray(bias, dtype=float), float(sigma))

    def _segment(self, block: SampleBlock, mount: MountTrack) -> PelvisAngles:
        n = len(block)
        if block.gyr is None:
            up = mount.vertical
            vertical_acc = dot3(block.acc, up) - np.where(norm3(up) > 0, STANDARD_GRAVITY, 0.0)
            nan = np.full(n, np.nan)
            velocity, position = self._vertical(vertical_acc)
            return PelvisAngles(
                block.t,
                nan,
                nan.copy(),
                nan.copy(),
                np.zeros(n, bool),
                velocity,
                position,
                mount.changed,
            )
        out = self._vqf.updateBatch(
            np.ascontiguousarray(block.gyr, dtype=float),
            np.ascontiguousarray(block.acc, dtype=float),
        )
        self._vqf_started = True
        sensor_to_earth = quaternion_to_matrix(out["quat6D"])
        vertical_acc = dot3(sensor_to_earth[:, 2, :], block.acc) - STANDARD_GRAVITY
        velocity, position = self._vertical(vertical_acc)
        body_to_earth = _matmul(sensor_to_earth, np.transpose(mount.rotation, (0, 2, 1)))
        yaw = np.arctan2(body_to_earth[:, 1, 0], body_to_earth[:, 0, 0])
        heading, settled = self._heading(yaw, mount.calibrated)
        c, s = np.cos(heading), np.sin(heading)
        unheading = np.zeros((n, 3, 3))
        unheading[:, 0, 0], unheading[:, 0, 1] = c, s
        unheading[:, 1, 0], unheading[:, 1, 1] = -s, c
        unheading[:, 2, 2] = 1.0
        obliquity, rotation, tilt = cardan_zxy_deg(_matmul(unheading, body_to_earth))
        valid = mount.calibrated & settled
        obliquity[~valid] = np.nan
        rotation[~valid] = np.nan
        tilt[~valid] = np.nan
        return PelvisAngles(
            block.t, obliquity, rotation, tilt, valid, velocity, position, mount.changed
        )

    def _vertical(self, vertical_acc: FloatArray) -> tuple[FloatArray, FloatArray]:
        velocity, self._zi_velocity = sosfilt(
            self._sos_velocity, vertical_acc, zi=self._zi_velocity
        )
        position, self._zi_position = sosfilt(
            self._sos_position, vertical_acc, zi=self._zi_position
        )
        return velocity, position

    def _heading(self, yaw: FloatArray, calibrated: BoolArray) -> tuple[FloatArray, BoolArray]:
        """Low-passed unwrapped yaw over runs of calibrated samples; and 'settled' flags."""
        n = yaw.shape[0]
        heading = np.zeros(n)
        settled = np.zeros(n, bool)
        edges = np.flatnonzero(np.diff(calibrated.astype(np.int8))) + 1
        bounds = [0, *edges.tolist(), n]
        for a, b in itertools.pairwise(bounds):
            if not calibrated[a]:
                self._heading_zi = None
                self._heading_age = 0
                continue
            if self._heading_zi is None:
                self._yaw_raw = self._yaw_unwrapped = float(yaw[a])
            step = np.angle(np.exp(1j * np.diff(yaw[a:b], prepend=self._yaw_raw)))
            # cumulative sum seeded with the carried value: same additions whatever the blocks
            unwrapped = np.cumsum(np.concatenate([[self._yaw_unwrapped], step]))[1:]
            if self._heading_zi is None:
                self._heading_zi = sosfilt_zi(self._sos_heading) * unwrapped[0]
            heading[a:b], self._heading_zi = sosfilt(
                self._sos_heading, unwrapped, zi=self._heading_zi
            )
            settled[a:b] = self._heading_age + np.arange(1, b - a + 1) >= self._settle_n
            self._heading_age += b - a
            self._yaw_raw = float(yaw[b - 1])
            self._yaw_unwrapped = float(unwrapped[-1])
        return heading, settled


def _matmul(a: FloatArray, b: FloatArray) -> FloatArray:
    """Stacked 3×3 products summed in a fixed order (bit-reproducible whatever the stack size)."""
    out: FloatArray = (
        a[:, :, 0, None] * b[:, None, 0, :]
        + a[:, :, 1, None] * b[:, None, 1, :]
        + a[:, :, 2, None] * b[:, None, 2, :]
    )
    return out


def _slice_track(track: MountTrack, start: int, stop: int) -> MountTrack:
    return MountTrack(*(getattr(track, name)[start:stop] for name in MountTrack.__slots__))
