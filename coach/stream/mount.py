"""Mount calibration: the rotation from a sensor's frame to its segment's body frame.

Body frame (design.md section 3): x forward, y left, z up. The sensor may be worn in any
orientation; the rotation is found from the data alone, per sample, and refined as the run goes.

Vertical (z). The mean specific force over whole gait cycles is gravity, because the mean
linear acceleration of a periodic movement is zero. A slow exponential mean of the accelerometer
(``gravity_tau_s``; bias-corrected at start so early values are the mean so far) gives the body
``z`` as the mean posture while moving. When the wearer first stands still (quasi-static: low
gyro and accelerometer activity for ``standing_s``) the gravity direction of that standing period
is used instead, so the angles are zero in the standing posture (design.md section 3).

Forward (x). In the horizontal plane, fore-aft acceleration is coupled to the vertical one at the
step frequency, while medio-lateral acceleration alternates sign from step to step and averages
out against it. The braking/propulsion pattern fixes the sign:

* running (spring-mass, Blickhan 1989; Cavagna et al. 1977): forward speed and height are lowest
  together at mid-stance, so the fore-aft acceleration is braking while the vertical acceleration
  rises after contact and propulsive while it falls: ``a_fwd ≈ -k · d(a_vert)/dt``;
* walking (inverted pendulum, Cavagna et al. 1977; Zijlstra & Hof 2003): speed is highest when the
  body is lowest (double support), so ``a_fwd ≈ +k · d(a_vert)/dt``.

The forward axis is therefore the direction of the slow mean of
``gait_sign · a_horizontal · d(a_vert)/dt`` (``gait_sign`` = -1 running, +1 walking). Running is
told from walking by a flight phase: vertical specific force below ``flight_g`` within the last
``flight_memory_s``. The ratio of that mean's norm to the mean of ``|a_horizontal|·|d(a_vert)/dt|``
is the coherence reported as ``confidence`` (0 = no information, 1 = perfectly consistent).

Slipped clip. A fast mean of the gravity direction (``fast_tau_s``) is compared with the vertical
in use; when they differ by more than ``change_deg`` the mount is declared changed: a flag is
raised at that sample and the calibration restarts from that sample on.

Rates of update. The signal filters and means run on every sample; the rotation (vertical,
forward, confidence, calibrated) is re-estimated on a fixed sample grid, every
``update_s`` (counted from the start of the calibration), and held in between. The grid does not
depend on how the samples are split into blocks, so neither do the results (bit-identical floats);
it saves the per-sample rotation algebra, which dominated the cost of small live blocks.

All filters are causal IIR filters run per block with carried state; memory is O(1).
On a data gap (time jump) the signal filters restart; the slow calibration is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, lfilter, sosfilt, sosfilt_zi

from coach.config import DetectionConfig
from coach.types import FloatArray, SampleBlock

BoolArray = NDArray[np.bool_]
STANDARD_GRAVITY = 9.80665  # m/s²
GAP_SAMPLES = 1.5  # a time step longer than this many sample periods is a gap


@dataclass(frozen=True, slots=True)
class MountSettings:
    """Tuning of the mount calibration (defaults suit pelvis and shank sensors, 50–500 Hz).

    Attributes:
        gravity_tau_s: time constant of the slow gravity mean (vertical axis), s.
        forward_tau_s: time constant of the slow forward-axis evidence, s.
        fast_tau_s: time constant of the fast gravity mean used to detect a slipped mount, s.
        change_deg: angle between fast gravity and the vertical in use that means the mount
            moved, degrees.
        band_hz: pass band of the accelerations used for activity and flight detection, Hz
            (the upper edge is lowered to 0.4 × rate at low rates).
        evidence_hz: low-pass applied on top of the band for the forward-axis evidence, Hz
            (keeps the step-frequency coupling, drops impact transients).
        flight_g: vertical specific force below which the body is airborne (running), g.
        flight_memory_s: a flight phase within this time means the gait is running, s.
        moving_rms: band-passed acceleration RMS above which the wearer moves, m/s².
        min_coherence: least forward-axis coherence to call the mount calibrated (0–1).
        standing_s: quasi-static time that defines the standing posture, s.
        static_gyro: angular-rate norm below which the sensor is quasi-static, rad/s.
        static_acc: band-passed acceleration norm below which the sensor is quasi-static, m/s².

    """

    gravity_tau_s: float = 20.0
    forward_tau_s: float = 20.0
    fast_tau_s: float = 2.0
    change_deg: float = 25.0
    band_hz: tuple[float, float] = (0.5, 10.0)
    evidence_hz: float = 4.0
    flight_g: float = 0.3
    flight_memory_s: float = 1.0
    moving_rms: float = 0.8
    min_coherence: float = 0.1
    standing_s: float = 2.0
    static_gyro: float = 0.1
    static_acc: float = 0.3


@dataclass(frozen=True, slots=True)
class MountEstimate:
    """The mount rotation at one sample.

    Attributes:
        t: session time of the sample, s.
        rotation: sensor→body rotation matrix (3, 3): ``v_body = rotation @ v_sensor``; its rows
            are the body axes (forward, left, up) in sensor coordinates.
        confidence: forward-axis coherence, 0–1.
        calibrated: True when both axes are known well enough to use.
        changed: True when a slipped mount was detected since the previous estimate returned.
        standing_reference: True when the vertical comes from a standing period.

    """

    t: float
    rotation: FloatArray
    confidence: float
    calibrated: bool
    changed: bool
    standing_reference: bool


@dataclass(frozen=True, slots=True)
class MountTrack:
    """Per-sample mount estimates of one block (same length as the block).

    Attributes:
        t: session time, s, shape (n,).
        rotation: sensor→body rotation per sample, shape (n, 3, 3) (identity until known).
        confidence: forward-axis coherence, 0–1, shape (n,).
        calibrated: both axes known, shape (n,).
        changed: a slipped mount was detected at this sample (calibration restarts), shape (n,).
        standing_reference: the vertical comes from a standing period, shape (n,).
        running: a flight phase was seen within ``flight_memory_s`` (running gait), shape (n,).
        vertical: body z axis in sensor coordinates (current estimate), shape (n, 3).

    """

    t: FloatArray
    rotation: FloatArray
    confidence: FloatArray
    calibrated: BoolArray
    changed: BoolArray
    standing_reference: BoolArray
    running: BoolArray
    vertical: FloatArray


def _ema(x: FloatArray, alpha: float, previous: FloatArray) -> FloatArray:
    """Exponential mean along axis 0, ``y[n] = (1-α) y[n-1] + α x[n]``, from ``previous``."""
    zi = ((1.0 - alpha) * previous)[np.newaxis]
    y: FloatArray = lfilter([alpha], [1.0, alpha - 1.0], x, axis=0, zi=zi)[0]
    return y


def dot3(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot product of (n, 3) arrays, summed in a fixed order (bit-reproducible)."""
    out: FloatArray = a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]
    return out


def norm3(a: FloatArray) -> FloatArray:
    """Row-wise Euclidean norm of (n, 3) arrays (bit-reproducible whatever n)."""
    out: FloatArray = np.sqrt(dot3(a, a))
    return out


def _normalize(v: FloatArray) -> FloatArray:
    norm = norm3(v)[..., np.newaxis]
    out: FloatArray = v / np.where(norm > 0.0, norm, 1.0)
    return out


@dataclass
class _Slow:
    """Calibration state that survives gaps (restarted only by a mount change)."""

    gravity: FloatArray = field(default_factory=lambda: np.zeros(3))
    gravity_w: float = 0.0
    fast: FloatArray = field(default_factory=lambda: np.zeros(3))
    fast_w: float = 0.0
    forward: FloatArray = field(default_factory=lambda: np.zeros(3))
    forward_norm: float = 0.0
    moving_samples: int = 0
    samples: int = 0
    static_run: int = 0
    static_sum: FloatArray = field(default_factory=lambda: np.zeros(3))
    standing: FloatArray | None = None
    standing_open: bool = False
    ever_moved: bool = False


class MountCalibrator:
    """Streaming sensor→body mount calibration from gravity and gait (see module docstring).

    Args:
        rate_hz: sample rate of the blocks, Hz.
        config: detection parameters (``calibration_s`` = least moving time before the forward
            axis is trusted).
        settings: tuning; defaults suit running and walking.

    """

    def __init__(
        self,
        rate_hz: float,
        config: DetectionConfig | None = None,
        settings: MountSettings | None = None,
    ) -> None:
        if not rate_hz > 0.0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self.config = config or DetectionConfig()
        self.settings = settings or MountSettings()
        s, dt = self.settings, 1.0 / self.rate_hz
        self._alpha_gravity = 1.0 - float(np.exp(-dt / s.gravity_tau_s))
        self._alpha_forward = 1.0 - float(np.exp(-dt / s.forward_tau_s))
        self._alpha_fast = 1.0 - float(np.exp(-dt / s.fast_tau_s))
        self._alpha_activity = 1.0 - float(np.exp(-dt / 0.5))
        low, high = s.band_hz
        high = min(high, 0.4 * self.rate_hz)
        self._sos_low = butter(2, high, "lowpass", fs=self.rate_hz, output="sos")
        self._sos_high = butter(2, low, "highpass", fs=self.rate_hz, output="sos")
        evidence = min(s.evidence_hz, 0.4 * self.rate_hz)
        self._sos_evidence = butter(2, evidence, "lowpass", fs=self.rate_hz, output="sos")
        self._min_moving = round(self.config.calibration_s * self.rate_hz)
        self._standing_n = round(s.standing_s * self.rate_hz)
        self._flight_memory = s.flight_memory_s
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new session)."""
        self._slow = _Slow()
        self._restart_filters()
        self._last_t: float | None = None
        self._last_flight_t = -np.inf

    def _restart_filters(self) -> None:
        self._zi_low: FloatArray | None = None
        self._zi_high: FloatArray | None = None
        self._zi_evidence = np.zeros((self._sos_evidence.shape[0], 2, 3))
        self._prev_vertical_acc: float | None = None
        self._activity = np.zeros(2)  # smoothed acc² and gyro² activity

    # ----------------------------------------------------------------------------------------
    def update(self, block: SampleBlock) -> MountEstimate | None:
        """Process a block; the estimate at its last sample (None for an empty block)."""
        track = self.track(block)
        if track.t.size == 0:
            return None
        changed = bool(track.changed.any())
        return MountEstimate(
            t=float(track.t[-1]),
            rotation=track.rotation[-1],
            confidence=float(track.confidence[-1]),
            calibrated=bool(track.calibrated[-1]),
            changed=changed,
            standing_reference=bool(track.standing_reference[-1]),
        )

    def track(self, block: SampleBlock) -> MountTrack:
        """Process a block; per-sample estimates (use either this or :meth:`update`)."""
        n = len(block)
        if n == 0:
            return _empty_track()
        parts: list[MountTrack] = []
        start = 0
        while start < n:
            if (
                self._last_t is not None
                and block.t[start] - self._last_t > GAP_SAMPLES / self.rate_hz
            ):
                self._restart_filters()
            stop = _first_gap(block.t, start, self.rate_hz)
            part, change_at = self._segment(block.slice(start, stop))
            if change_at is not None:
                part = _cut(part, change_at + 1)
                stop = start + change_at + 1
                self._restart_after_change()
            parts.append(part)
            self._last_t = float(block.t[stop - 1])
            start = stop
        return _concat(parts)

    def _restart_after_change(self) -> None:
        self._slow = _Slow()
        self._last_flight_t = -np.inf
        self._restart_filters()

    # ----------------------------------------------------------------------------------------
    def _segment(self, block: SampleBlock) -> tuple[MountTrack, int | None]:
        """Gap-free samples: per-sample estimates, and the index of a mount change if any.

        State is advanced through the whole segment; when a change is found the caller keeps
        the samples up to it and restarts the calibration after it, then reprocesses the rest.
        """
        s, st = self.settings, self._slow
        n = len(block)
        acc = block.acc
        # --- signal filters (restarted at gaps): low-pass then high-pass (band) -------------
        if self._zi_low is None:
            self._zi_low = sosfilt_zi(self._sos_low)[:, :, None] * acc[0]
        acc_low, zi_low = sosfilt(self._sos_low, acc, axis=0, zi=self._zi_low)
        if self._zi_high is None:
            self._zi_high = sosfilt_zi(self._sos_high)[:, :, None] * acc_low[0]
        acc_band, zi_high = sosfilt(self._sos_high, acc_low, axis=0, zi=self._zi_high)
        acc_ev, zi_evidence = sosfilt(self._sos_evidence, acc_band, axis=0, zi=self._zi_evidence)
        # --- quasi-static detection (for the standing reference) ----------------------------
        band_sq = dot3(acc_band, acc_band)
        gyr_sq = dot3(block.gyr, block.gyr) if block.gyr is not None else np.zeros(n)
        activity = _ema(np.column_stack([band_sq, gyr_sq]), self._alpha_activity, self._activity)
        static = (activity[:, 0] < s.static_acc**2) & (activity[:, 1] < s.static_gyro**2)
        moving = activity[:, 0] > s.moving_rms**2
        # --- gravity means (slow and fast), bias-corrected --------------------------------
        ones = np.ones((n, 1))
        g_slow = _ema(
            np.hstack([acc, ones]), self._alpha_gravity, np.append(st.gravity, st.gravity_w)
        )
        g_fast = _ema(np.hstack([acc, ones]), self._alpha_fast, np.append(st.fast, st.fast_w))
        slow_dir = _normalize(g_slow[:, :3])
        fast_dir = _normalize(g_fast[:, :3])
        # --- standing reference: the first quasi-static run of standing_s or more ----------
        standing_dir, has_standing, run_len, run_sum, standing_open = self._standing(acc, static)
        vertical = np.where(has_standing[:, None], standing_dir, slow_dir)
        # --- slipped mount: fast gravity far from the vertical in use -----------------------
        cos_change = np.cos(np.radians(s.change_deg))
        established = st.samples + np.arange(1, n + 1) >= self._min_moving
        changed = (dot3(fast_dir, vertical) < cos_change) & established
        change_at = int(np.argmax(changed)) if changed.any() else None
        # --- forward evidence: gait-signed coupling of horizontal and vertical jerk ----------
        a_vert = dot3(acc_ev, vertical)
        a_horiz = acc_ev - a_vert[:, None] * vertical
        previous = a_vert[0] if self._prev_vertical_acc is None else self._prev_vertical_acc
        jerk = np.diff(a_vert, prepend=previous) * self.rate_hz
        sf_vert = dot3(acc_low, vertical) / STANDARD_GRAVITY
        flight_t = np.where(sf_vert < s.flight_g, block.t, -np.inf)
        last_flight = np.maximum.accumulate(np.maximum(flight_t, self._last_flight_t))
        running = block.t - last_flight <= self._flight_memory
        gait_sign = np.where(running, -1.0, 1.0) * moving
        evidence = a_horiz * (gait_sign * jerk)[:, None]
        scale = norm3(a_horiz) * np.abs(jerk) * moving
        fwd = _ema(
            np.column_stack([evidence, scale]),
            self._alpha_forward,
            np.append(st.forward, st.forward_norm),
        )
        moving_count = st.moving_samples + np.cumsum(moving)
        # --- assemble per-sample rotations ---------------------------------------------------
        fwd_vec = fwd[:, :3] - dot3(fwd[:, :3], vertical)[:, None] * vertical
        fwd_norm = norm3(fwd_vec)
        confidence = np.where(
            fwd[:, 3] > 0.0, fwd_norm / np.where(fwd[:, 3] > 0, fwd[:, 3], 1.0), 0.0
        )
        calibrated = (moving_count >= self._min_moving) & (confidence >= s.min_coherence)
        rotation = _rotation(fwd_vec, vertical, calibrated)
        # --- carry state ---------------------------------------------------------------------
        last = n - 1 if change_at is None else change_at
        self._zi_low, self._zi_high, self._zi_evidence = zi_low, zi_high, zi_evidence
        self._activity = activity[last]
        st.gravity, st.gravity_w = g_slow[last, :3], float(g_slow[last, 3])
        st.fast, st.fast_w = g_fast[last, :3], float(g_fast[last, 3])
        st.forward, st.forward_norm = fwd[last, :3], float(fwd[last, 3])
        st.moving_samples = int(moving_count[last])
        st.samples += last + 1
        st.static_run, st.static_sum = int(run_len[last]), run_sum[last]
        st.standing_open = bool(standing_open[last])
        if has_standing[last]:
            st.standing = standing_dir[last]
        self._prev_vertical_acc = float(a_vert[last])
        self._last_flight_t = float(last_flight[last])
        track = MountTrack(
            t=block.t,
            rotation=rotation,
            confidence=confidence,
            calibrated=calibrated,
            changed=np.arange(n) == (change_at if change_at is not None else -1),
            standing_reference=has_standing,
            running=running,
            vertical=vertical,
        )
        return track, change_at

    def _standing(
        self, acc: FloatArray, static: BoolArray
    ) -> tuple[FloatArray, BoolArray, NDArray[np.int64], FloatArray, BoolArray]:
        """Per sample: standing vertical, whether it is set, static run length and sum, open.

        The first quasi-static run that lasts ``standing_s`` becomes the standing reference; it
        is refined while that run lasts, then frozen until the mount changes.
        """
        st = self._slow
        n = acc.shape[0]
        idx = np.arange(n)
        last_break = np.maximum.accumulate(np.where(~static, idx, -1))
        fresh = last_break >= 0
        run_len = np.where(static, np.where(fresh, idx - last_break, st.static_run + idx + 1), 0)
        # running sum restarted at each non-static sample, seeded with the carried sum
        increments = np.where(static[:, None], acc, 0.0)
        run_sum = np.zeros((n, 3))
        run_starts = np.flatnonzero(static[1:] & ~static[:-1]) + 1
        for k, piece in enumerate(np.split(idx, run_starts)):
            seed = st.static_sum if k == 0 else np.zeros(3)
            run_sum[piece] = np.cumsum(np.vstack([seed, increments[piece]]), axis=0)[1:]
        run_sum[~static] = 0.0
        closed = np.zeros(n, bool)
        if st.standing is not None and not st.standing_open:
            return np.broadcast_to(st.standing, (n, 3)), ~closed, run_len, run_sum, closed
        if st.standing_open:
            first = 0
        else:
            hit = np.flatnonzero(run_len >= self._standing_n)
            if hit.size == 0:
                return np.zeros((n, 3)), closed, run_len, run_sum, closed
            first = int(hit[0])
        breaks = np.flatnonzero(~static[first:])
        end = first + int(breaks[0]) if breaks.size else n
        open_ = (idx >= first) & (idx < end)
        direction = _normalize(run_sum)
        source = np.maximum.accumulate(np.where(open_, idx, -1))
        if st.standing is not None:
            prior = np.broadcast_to(st.standing, (n, 3))
            standing_dir = np.where(source[:, None] >= 0, direction[np.maximum(source, 0)], prior)
            return standing_dir, ~closed, run_len, run_sum, open_
        has = source >= 0
        standing_dir = np.where(has[:, None], direction[np.maximum(source, 0)], 0.0)
        return standing_dir, has, run_len, run_sum, open_


def _rotation(forward: FloatArray, vertical: FloatArray, calibrated: BoolArray) -> FloatArray:
    """Rows forward, left, up from a horizontal forward vector and the vertical (n, 3, 3)."""
    x = _normalize(forward)
    y = np.cross(vertical, x)
    rot = np.stack([x, _normalize(y), vertical], axis=1)
    rot[~calibrated] = np.eye(3)
    return rot


def _first_gap(t: FloatArray, start: int, rate_hz: float) -> int:
    """Index after the last sample of the gap-free run starting at ``start``."""
    jumps = np.flatnonzero(np.diff(t[start:]) > GAP_SAMPLES / rate_hz)
    return start + int(jumps[0]) + 1 if jumps.size else t.shape[0]


def _cut(track: MountTrack, stop: int) -> MountTrack:
    return MountTrack(*(getattr(track, name)[:stop] for name in MountTrack.__slots__))


def _concat(parts: list[MountTrack]) -> MountTrack:
    if len(parts) == 1:
        return parts[0]
    return MountTrack(
        *(np.concatenate([getattr(p, name) for p in parts]) for name in MountTrack.__slots__)
    )


def _empty_track() -> MountTrack:
    return MountTrack(
        t=np.zeros(0),
        rotation=np.zeros((0, 3, 3)),
        confidence=np.zeros(0),
        calibrated=np.zeros(0, bool),
        changed=np.zeros(0, bool),
        standing_reference=np.zeros(0, bool),
        running=np.zeros(0, bool),
        vertical=np.zeros((0, 3)),
    )
