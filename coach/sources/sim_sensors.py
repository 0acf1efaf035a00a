"""What each simulated sensor measures, from the segment motion.

An ideal IMU rigidly fixed at a point with orientation ``R_sensor = R_segment · M`` reports
specific force ``f = R_sensorᵀ (a − g)`` with ``g = (0, 0, −9.81) m/s²`` (so +9.81 up at rest)
and angular rate ``ω`` in its own frame. Here ``a`` is the second difference of the point's
position and ``ω = vee(Rᵀ Ṙ)`` (central differences) at a high internal rate (≥ 1 kHz), then
low-pass filtered with zero phase (Butterworth, 0.4 × sample rate, forward-backward) and
interpolated (cubic) at each sensor's own sample times.

Added to the rigid motion, in the segment frame (they are sensor motion relative to the bone,
sub-millimetre, so not part of the truth):
- impact transient at each initial contact: a damped 40 Hz (shank) / 25 Hz (pelvis) oscillation,
  decay 7–10 ms, peak ∝ speed^1.5 (≈ 4 g axial on the stance shank at 3 m/s, ≈ 0.8 g on the
  pelvis), as tibial accelerometry shows (Lafortune 1995; Milner 2006);
- soft-tissue wobble of the clip: a damped spring of 10–20 Hz (per sensor), decay 40 ms, excited
  at every contact, a few m/s² along a fixed per-sensor direction.

Then the sensor's imperfections (per sensor, seeded): white noise, accelerometer bias, gyro
bias (constant + random walk), int16 quantisation at ±16 g / ±2000 °/s with clipping
(saturation), packet loss in bursts, clock drift and start offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt

from coach.types import FloatArray

G_UP = np.array([0.0, 0.0, 9.81])
STANDARD_GRAVITY = 9.80665
ACC_RANGE = 16.0 * STANDARD_GRAVITY
GYRO_RANGE = np.radians(2000.0)
INT16_STEPS = 32768.0


@dataclass(frozen=True)
class NoiseModel:
    """Per-axis imperfection magnitudes (1 standard deviation)."""

    acc_white: float  # m/s²
    gyro_white: float  # rad/s
    acc_bias: float  # m/s²
    gyro_bias: float  # rad/s
    gyro_random_walk: float  # rad/s per sqrt(s)
    quantise: bool


NOISE_MODELS: dict[str, NoiseModel] = {
    "none": NoiseModel(0.0, 0.0, 0.0, 0.0, 0.0, False),
    "low": NoiseModel(0.015, 0.0015, 0.03, 0.003, 0.0001, True),
    "realistic": NoiseModel(0.05, 0.005, 0.1, 0.01, 0.0003, True),
    "high": NoiseModel(0.15, 0.015, 0.3, 0.03, 0.001, True),
}


@dataclass(frozen=True)
class ContactTransient:
    """Damped oscillation added at each contact: ``A·exp(−t/τ)·sin(2πft)`` along ``direction``."""

    frequency_hz: float
    decay_s: float
    direction: FloatArray  # segment frame, (3,)

    def evaluate(self, since_contact: FloatArray, amplitude: FloatArray) -> FloatArray:
        """Specific force (n, 3), m/s²; ``since_contact`` < 0 or ≥ 10 τ gives 0."""
        active = (since_contact >= 0.0) & (since_contact < 10.0 * self.decay_s)
        x = np.where(active, since_contact, 0.0)
        wave = amplitude * np.exp(-x / self.decay_s) * np.sin(2 * np.pi * self.frequency_hz * x)
        return np.where(active, wave, 0.0)[:, None] * self.direction[None, :]


def time_since_last(contacts: FloatArray, t: FloatArray) -> tuple[FloatArray, np.ndarray]:
    """For each time, seconds since the last contact at or before it and that contact's index."""
    index = np.searchsorted(contacts, t, side="right") - 1
    valid = index >= 0
    safe = np.clip(index, 0, max(contacts.size - 1, 0))
    since = np.where(valid, t - contacts[safe] if contacts.size else np.inf, np.inf)
    return since, safe


def rigid_imu(
    rotation: FloatArray, position: FloatArray, step_s: float
) -> tuple[FloatArray, FloatArray]:
    """Specific force and angular rate in the segment frame from poses on a uniform grid.

    Returns arrays for the interior samples 1..n-2 (central differences), shapes (n-2, 3).
    """
    acc_world = (position[2:] - 2.0 * position[1:-1] + position[:-2]) / step_s**2
    centre = rotation[1:-1]
    d_rotation = (rotation[2:] - rotation[:-2]) / (2.0 * step_s)
    omega_skew = np.swapaxes(centre, 1, 2) @ d_rotation
    gyro = 0.5 * np.stack(
        [
            omega_skew[:, 2, 1] - omega_skew[:, 1, 2],
            omega_skew[:, 0, 2] - omega_skew[:, 2, 0],
            omega_skew[:, 1, 0] - omega_skew[:, 0, 1],
        ],
        axis=-1,
    )
    specific = (np.swapaxes(centre, 1, 2) @ (acc_world + G_UP)[:, :, None])[:, :, 0]
    return specific, gyro


def anti_alias_and_sample(
    t_internal: FloatArray, signals: FloatArray, rate_hz: float, t_samples: FloatArray
) -> FloatArray:
    """Zero-phase low-pass at 0.4 × ``rate_hz``, then cubic interpolation at ``t_samples``.

    ``t_internal`` is a uniform grid; the interpolation is 4-point Lagrange (cubic), accurate to
    ~1e-4 relative for content at 0.4 × rate on a grid ≥ 5 × rate.
    """
    step = t_internal[1] - t_internal[0]
    sos = butter(4, 0.4 * rate_hz, fs=1.0 / step, output="sos")
    filtered = sosfiltfilt(sos, signals, axis=0)
    position = (t_samples - t_internal[0]) / step
    base = np.clip(np.floor(position).astype(np.intp), 1, t_internal.size - 3)
    x = (position - base)[:, None]
    w_m1 = -x * (x - 1.0) * (x - 2.0) / 6.0
    w_0 = (x + 1.0) * (x - 1.0) * (x - 2.0) / 2.0
    w_1 = -(x + 1.0) * x * (x - 2.0) / 2.0
    w_2 = (x + 1.0) * x * (x - 1.0) / 6.0
    return np.asarray(
        w_m1 * filtered[base - 1]
        + w_0 * filtered[base]
        + w_1 * filtered[base + 1]
        + w_2 * filtered[base + 2],
        dtype=np.float64,
    )


def sample_times(
    duration_s: float, rate_hz: float, drift_ppm: float, offset_s: float
) -> FloatArray:
    """True times of a sensor's samples: its clock runs at rate·(1 + ppm·1e-6), from offset."""
    actual_rate = rate_hz * (1.0 + drift_ppm * 1e-6)
    count = int(np.ceil((duration_s - offset_s) * actual_rate))
    t = offset_s + np.arange(count) / actual_rate
    return t[t < duration_s]


def apply_imperfections(
    acc: FloatArray,
    gyro: FloatArray,
    rate_hz: float,
    model: NoiseModel,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Add noise and bias, quantise to int16 and clip; returns (acc, gyro, constant gyro bias)."""
    n = acc.shape[0]
    gyro_bias = model.gyro_bias * rng.standard_normal(3)
    acc_bias = model.acc_bias * rng.standard_normal(3)
    walk = np.cumsum(rng.standard_normal((n, 3)), axis=0) * (
        model.gyro_random_walk / np.sqrt(rate_hz)
    )
    acc_out = acc + acc_bias + model.acc_white * rng.standard_normal((n, 3))
    gyro_out = gyro + gyro_bias + walk + model.gyro_white * rng.standard_normal((n, 3))
    if model.quantise:
        acc_out = _quantise(acc_out, ACC_RANGE)
        gyro_out = _quantise(gyro_out, GYRO_RANGE)
    return acc_out, gyro_out, gyro_bias


def _quantise(values: FloatArray, full_scale: float) -> FloatArray:
    lsb = full_scale / INT16_STEPS
    counts = np.clip(np.round(values / lsb), -INT16_STEPS, INT16_STEPS - 1)
    return counts * lsb


def packet_loss_mask(
    n_samples: int,
    loss_fraction: float,
    samples_per_packet: int,
    rng: np.random.Generator,
    mean_burst_packets: float = 2.0,
) -> np.ndarray:
    """Boolean mask of samples kept: whole packets lost in bursts (geometric burst lengths).

    The lost fraction approaches ``loss_fraction`` (within about one burst).
    """
    keep = np.ones(n_samples, dtype=bool)
    if loss_fraction <= 0.0 or n_samples == 0:
        return keep
    n_packets = -(-n_samples // samples_per_packet)
    lost = np.zeros(n_packets, dtype=bool)
    target = loss_fraction * n_packets
    for _ in range(20):
        missing = target - lost.sum()
        if missing < 1.0:
            break
        n_bursts = max(1, int(np.ceil(missing / mean_burst_packets)))
        starts = rng.integers(0, n_packets, n_bursts)
        lengths = rng.geometric(1.0 / mean_burst_packets, n_bursts)
        lengths = np.minimum(lengths, np.maximum(1, int(np.ceil(missing)) // n_bursts + 1))
        delta = np.zeros(n_packets + 1, dtype=np.int64)
        np.add.at(delta, starts, 1)
        np.add.at(delta, np.minimum(starts + lengths, n_packets), -1)
        lost |= np.cumsum(delta[:-1]) > 0
    return ~np.repeat(lost, samples_per_packet)[:n_samples]


def random_mount(kind: str, rng: np.random.Generator) -> FloatArray:
    """Sensor-to-segment rotation M (v_segment = M · v_sensor).

    ``nominal``: identity. ``tilted``: 10–40° about a uniformly random axis. ``random``: uniform
    over SO(3) (Shoemake's quaternion method), upside-down mounts included.
    """
    if kind == "nominal":
        return np.eye(3)
    if kind == "tilted":
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        angle = np.radians(rng.uniform(10.0, 40.0))
        return _axis_angle(axis, angle)
    u1, u2, u3 = rng.uniform(0.0, 1.0, 3)
    q = np.array(
        [
            np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
            np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
            np.sqrt(u1) * np.sin(2 * np.pi * u3),
            np.sqrt(u1) * np.cos(2 * np.pi * u3),
        ]
    )
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=np.float64,
    )


def _axis_angle(axis: FloatArray, angle: float) -> FloatArray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    return np.asarray(rotation, dtype=np.float64)
