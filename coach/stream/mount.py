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

Rates of update. The accelerometer is low-passed at the input rate (anti-alias), then every
``d``-th sample is kept (``d`` = the largest integer leaving at least ``processing_hz``; 100 Hz
keeps the rbds001 accuracy, 50 Hz lost ~0.1°); band-pass, means and evidence run at that rate.
The rotation (vertical, forward, confidence, calibrated) is re-estimated every ``update_s`` and
held in between. Both grids count samples from the start of the calibration, never block
boundaries, so the results do not depend on how samples are split into blocks (bit-identical).

All filters are causal IIR filters run per block with carried state; memory is O(1).
On a data gap (time jump) the signal filters restart; the slow calibration is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, sosfilt, sosfilt_zi

from coach.config import DetectionConfig
from coach.types import FloatArray, SampleBlock

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]
STANDARD_GRAVITY = 9.80665  # m/s²
GAP_SAMPLES = 1.5  # a time step longer than this many sample periods is a gap


# --- low-overhead causal filtering --------------------------------------------------------------
SosKernel = Callable[[FloatArray, FloatArray, FloatArray], None]


def _public_sos_kernel(sos: FloatArray, x: FloatArray, zi: FloatArray) -> None:
    """``scipy.signal.sosfilt`` of the rows of ``x`` (c, n), in place, state ``zi`` (c, s, 2)."""
    y, zf = sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 1, 0))
    x[...] = y
    zi[...] = np.moveaxis(zf, 0, 1)


def _select_sos_kernel() -> SosKernel:
    """The compiled SOS loop of scipy without its per-call checks (~30× less overhead per call).

    ``scipy.signal._sosfilt._sosfilt`` is private API, hence the check and the fallback.

    It is checked against the public ``sosfilt`` at import; if anything differs, the public
    function is used.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt as kernel
    except ImportError:  # pragma: no cover - depends on the scipy version
        return _public_sos_kernel
    rng = np.random.default_rng(0)
    sos = butter(4, 0.1, output="sos")
    x, zi = rng.normal(size=(3, 17)), rng.normal(size=(3, sos.shape[0], 2))
    x_ref, zi_ref = x.copy(), zi.copy()
    _public_sos_kernel(sos, x_ref, zi_ref)
    try:
        kernel(sos, x, zi)
    except Exception:  # pragma: no cover - depends on the scipy version
        return _public_sos_kernel
    if np.array_equal(x, x_ref) and np.array_equal(zi, zi_ref):
        return kernel  # type: ignore[no-any-return]
    return _public_sos_kernel  # pragma: no cover


sos_filter_inplace: SosKernel = _select_sos_kernel()
"""Filter the rows of a C-contiguous float64 array ``x`` (c, n) in place with ``sos`` (s, 6),
carrying the per-row state ``zi`` (c, s, 2) in place (``scipy.signal.sosfilt`` semantics)."""


def ema_sos(alpha: float) -> FloatArray:
    """One-section SOS of the exponential mean ``y[n] = (1-α) y[n-1] + α x[n]``."""
    return np.array([[alpha, 0.0, 0.0, 1.0, alpha - 1.0, 0.0]])


def ema_state(previous: FloatArray) -> FloatArray:
    """Filter state (c, 1, 2) of :func:`ema_sos` whose last output was ``previous`` (c,)."""
    zi = np.zeros((previous.shape[0], 1, 2))
    zi[:, 0, 0] = previous
    return zi


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
        update_s: the rotation is re-estimated every this many seconds (fixed sample grid), s.
        processing_hz: after the anti-alias low-pass, samples are decimated by an integer factor
            to at least this rate before the calibration (the gait information is below
            10 Hz), Hz.

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
    update_s: float = 0.25
    processing_hz: float = 100.0


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


def dot3(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot product of (n, 3) arrays, summed in a fixed order (bit-reproducible)."""
    out: FloatArray = a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]
    return out


def norm3(a: FloatArray) -> FloatArray:
    """Row-wise Euclidean norm of (n, 3) arrays (bit-reproducible whatever n)."""
    out: FloatArray = np.sqrt(dot3(a, a))
    return out


def _normalize(v: FloatArray) -> FloatArray:
    """Unit rows of an (m, 3) array (zero rows stay zero).

    Each row's 3-term sum is reduced on its own, so its result does not depend on other rows.
    """
    norm = np.sqrt(np.add.reduce(v * v, axis=-1, keepdims=True))
    norm[norm == 0.0] = 1.0
    out: FloatArray = v / norm
    return out


def _column_sum(a: FloatArray) -> FloatArray:
    """Sum of the 3 rows of a (3, n) array in a fixed order (bit-reproducible whatever n)."""
    out: FloatArray = a[0] + a[1] + a[2]
    return out


@dataclass
class _Slow:
    """Calibration state that survives gaps (restarted only by a mount change)."""

    zi_gravity: FloatArray = field(default_factory=lambda: np.zeros((4, 1, 2)))
    zi_fast: FloatArray = field(default_factory=lambda: np.zeros((4, 1, 2)))
    zi_forward: FloatArray = field(default_factory=lambda: np.zeros((4, 1, 2)))
    moving_samples: int = 0
    samples: int = 0
    static_run: int = 0
    static_sum: FloatArray = field(default_factory=lambda: np.zeros(3))
    standing: FloatArray | None = None
    standing_open: bool = False
    # the estimate in use (set at the grid samples)
    vertical: FloatArray = field(default_factory=lambda: np.zeros(3))
    rotation: FloatArray = field(default_factory=lambda: np.eye(3))
    confidence: float = 0.0
    calibrated: bool = False


@dataclass(frozen=True, slots=True)
class MountPieces:
    """Compact per-block mount estimates: a few estimates and which sample uses which.

    Attributes:
        group: index into the per-estimate arrays for each sample, shape (n,).
        rotation: sensor→body rotations, shape (m, 3, 3).
        vertical: body z axis in sensor coordinates, shape (m, 3).
        confidence: forward-axis coherence, shape (m,).
        calibrated: both axes known, shape (m,).
        standing_reference: the vertical comes from a standing period, shape (m,).
        running: a flight phase was seen within ``flight_memory_s``, per sample, shape (n,).
        change_at: index of the sample at which a slipped mount was detected, or None.

    """

    group: IntArray
    rotation: FloatArray
    vertical: FloatArray
    confidence: FloatArray
    calibrated: BoolArray
    standing_reference: BoolArray
    running: BoolArray
    change_at: int | None

    def track(self, t: FloatArray) -> MountTrack:
        """Per-sample arrays."""
        g = self.group
        changed = np.zeros(g.shape[0], bool)
        if self.change_at is not None:
            changed[self.change_at] = True
        return MountTrack(
            t=t,
            rotation=self.rotation[g],
            confidence=self.confidence[g],
            calibrated=self.calibrated[g],
            changed=changed,
            standing_reference=self.standing_reference[g],
            running=self.running,
            vertical=self.vertical[g],
        )


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
        s = self.settings
        self._decimation = max(1, int(self.rate_hz // s.processing_hz))
        self._rate_d = self.rate_hz / self._decimation
        dt = 1.0 / self._rate_d
        self._sos_gravity = ema_sos(1.0 - float(np.exp(-dt / s.gravity_tau_s)))
        self._sos_forward = ema_sos(1.0 - float(np.exp(-dt / s.forward_tau_s)))
        self._sos_fast = ema_sos(1.0 - float(np.exp(-dt / s.fast_tau_s)))
        self._sos_activity = ema_sos(1.0 - float(np.exp(-dt / 0.5)))
        low, high = s.band_hz
        high = min(high, 0.4 * self._rate_d)
        self._sos_low = butter(2, high, "lowpass", fs=self.rate_hz, output="sos")
        self._sos_high = butter(2, low, "highpass", fs=self._rate_d, output="sos")
        evidence = min(s.evidence_hz, 0.4 * self._rate_d)
        self._sos_evidence = butter(2, evidence, "lowpass", fs=self._rate_d, output="sos")
        self._zi_unit_low = sosfilt_zi(self._sos_low)
        self._zi_unit_high = sosfilt_zi(self._sos_high)
        self._min_moving = round(self.config.calibration_s * self._rate_d)
        self._standing_n = round(s.standing_s * self._rate_d)
        self._grid = max(1, round(s.update_s * self._rate_d))  # in decimated samples
        self._cos_change = float(np.cos(np.radians(s.change_deg)))
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new session)."""
        self._slow = _Slow()
        self._restart_filters()
        self._last_t: float | None = None
        self._last_flight_t = -np.inf
        self._running = False

    def _restart_filters(self) -> None:
        self._zi_low: FloatArray | None = None
        self._zi_high: FloatArray | None = None
        self._zi_evidence = np.zeros((3, self._sos_evidence.shape[0], 2))
        self._prev_vertical_acc: float | None = None
        self._zi_activity = np.zeros((2, 1, 2))  # smoothed acc² and gyro² activity

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
        if len(block) == 0:
            return _empty_track()
        parts = [piece.track(t) for t, piece in self.pieces(block)]
        return parts[0] if len(parts) == 1 else _concat(parts)

    def pieces(self, block: SampleBlock) -> list[tuple[FloatArray, MountPieces]]:
        """Process a block; compact estimates per run of samples without gap or mount change.

        Returns (times of the run, estimates) pairs covering the block in order.
        """
        n = len(block)
        out: list[tuple[FloatArray, MountPieces]] = []
        start = 0
        max_step = GAP_SAMPLES / self.rate_hz
        while start < n:
            if self._last_t is not None and block.t[start] - self._last_t > max_step:
                self._restart_filters()
            stop = _first_gap(block.t, start, self.rate_hz)
            gyr = None if block.gyr is None else block.gyr[start:stop]
            piece = self._segment(block.t[start:stop], block.acc[start:stop], gyr)
            if piece.change_at is not None:
                stop = start + piece.change_at + 1
                piece = _cut(piece, piece.change_at + 1)
                self._restart_after_change()
            out.append((block.t[start:stop], piece))
            self._last_t = float(block.t[stop - 1])
            start = stop
        return out

    def _restart_after_change(self) -> None:
        self._slow = _Slow()
        self._last_flight_t = -np.inf
        self._running = False
        self._restart_filters()

    # ----------------------------------------------------------------------------------------
    def _segment(self, t: FloatArray, acc: FloatArray, gyr: FloatArray | None) -> MountPieces:
        """Gap-free samples: compact estimates, and the index of a mount change if any.

        State is advanced through the whole segment, or up to the mount change when one is
        found (the caller keeps the samples up to it and reprocesses the rest).
        """
        s, st, d = self.settings, self._slow, self._decimation
        n = t.shape[0]
        # --- anti-alias low-pass at the input rate (restarted at gaps), then decimation -------
        # (filter states are advanced in place: a mount change restarts them all anyway)
        acc_low = np.array(acc.T, dtype=float, order="C")  # (3, n), filtered in place
        if self._zi_low is None:
            self._zi_low = acc_low[:, 0, None, None] * self._zi_unit_low
        sos_filter_inplace(self._sos_low, acc_low, self._zi_low)
        first_d = (-st.samples) % d  # decimated samples: every d-th since calibration start
        if first_d >= n:
            st.samples += n
            return self._hold(n)
        picks = slice(first_d, None, d)
        low = np.ascontiguousarray(acc_low[:, picks])  # (3, nd)
        nd = low.shape[1]
        td = t[picks]
        kd0 = (st.samples + d - 1) // d  # decimated samples before this block
        # --- band-pass and evidence low-pass (restarted at gaps) ---------------------------
        if self._zi_high is None:
            self._zi_high = low[:, 0, None, None] * self._zi_unit_high
        band = low.copy()
        sos_filter_inplace(self._sos_high, band, self._zi_high)
        acc_ev = band.copy()
        sos_filter_inplace(self._sos_evidence, acc_ev, self._zi_evidence)
        # --- activity (quasi-static and moving detection) ----------------------------------------
        activity = np.empty((2, nd))
        activity[0] = _column_sum(band * band)
        if gyr is None:
            activity[1] = 0.0
        else:
            gyr_d = gyr[picks].T
            activity[1] = _column_sum(gyr_d * gyr_d)
        sos_filter_inplace(self._sos_activity, activity, self._zi_activity)
        moving = activity[0] > s.moving_rms**2
        # --- gravity means (slow and fast), bias-corrected by the 4th channel (weight) ----------
        g_slow = np.empty((4, nd))
        g_slow[:3] = low
        g_slow[3] = 1.0
        g_fast = g_slow.copy()
        sos_filter_inplace(self._sos_gravity, g_slow, st.zi_gravity)
        sos_filter_inplace(self._sos_fast, g_fast, st.zi_fast)
        # --- grid samples: new vertical, slipped-mount check --------------------------------
        k = self._grid
        first = (-kd0) % k
        grid = np.arange(first, nd, k)
        m = grid.shape[0]
        vertical = np.empty((m + 1, 3))
        vertical[0] = st.vertical
        standing = np.empty((m + 1, 3))
        has_standing = np.empty(m + 1, bool)
        has_standing[0] = st.standing is not None
        standing_open = st.standing_open
        change_at: int | None = None
        run_len, run_sum = st.static_run, st.static_sum
        if m:
            static = (activity[0] < s.static_acc**2) & (activity[1] < s.static_gyro**2)
            run_lens, run_sums = self._static_runs(low, static)
            run_len, run_sum = int(run_lens[-1]), run_sums[-1]
            slow_dir = _normalize(g_slow[:3, grid].T)
            standing_ref, has_standing[1:], open_at = self._standing_at(
                run_lens[grid], run_sums[grid], st.standing, st.standing_open
            )
            standing[1:] = standing_ref
            vertical[1:] = np.where(has_standing[1:, None], standing_ref, slow_dir)
            fast_dir = _normalize(g_fast[:3, grid].T)
            established = kd0 + grid + 1 >= self._min_moving
            changed = (dot3(fast_dir, vertical[1:]) < self._cos_change) & established
            if changed.any():
                m = int(np.argmax(changed)) + 1
                change_at = first_d + int(grid[m - 1]) * d
                grid, vertical, has_standing = grid[:m], vertical[: m + 1], has_standing[: m + 1]
                standing, open_at = standing[: m + 1], open_at[:m]
            standing_open = bool(open_at[-1])
        elif (activity[0] < s.static_acc**2).any():
            static = (activity[0] < s.static_acc**2) & (activity[1] < s.static_gyro**2)
            run_lens, run_sums = self._static_runs(low, static)
            run_len, run_sum = int(run_lens[-1]), run_sums[-1]
        elif run_len:
            run_len, run_sum = 0, np.zeros(3)
        stop_d = nd if change_at is None else int(grid[-1]) + 1
        # per decimated sample: 0 = the carried estimate, j = the j-th grid sample's estimate
        group_d = (np.arange(stop_d) + (k - first)) // k
        vert = np.take(vertical, group_d, axis=0).T  # (3, stop_d)
        # --- running (flight phase) and forward evidence --------------------------------------
        acc_ev = acc_ev[:, :stop_d]
        sf_vert = _column_sum(low[:, :stop_d] * vert) * (1.0 / STANDARD_GRAVITY)
        flight_t = np.where(sf_vert < s.flight_g, td[:stop_d], -np.inf)
        flight_t[0] = max(flight_t[0], self._last_flight_t)
        last_flight = np.maximum.accumulate(flight_t)
        running = td[:stop_d] - last_flight <= s.flight_memory_s
        a_vert = _column_sum(acc_ev * vert)
        previous = a_vert[0] if self._prev_vertical_acc is None else self._prev_vertical_acc
        jerk = np.empty(stop_d)
        jerk[0] = a_vert[0] - previous
        np.subtract(a_vert[1:], a_vert[:-1], out=jerk[1:])
        jerk *= self._rate_d
        a_horiz = acc_ev - a_vert * vert
        moving_s = moving[:stop_d]
        gait_sign = np.where(running, -1.0, 1.0) * moving_s
        forward = np.empty((4, stop_d))
        forward[:3] = a_horiz * (gait_sign * jerk)
        forward[3] = np.sqrt(_column_sum(a_horiz * a_horiz)) * np.abs(jerk) * moving_s
        sos_filter_inplace(self._sos_forward, forward, st.zi_forward)
        # --- estimates at the grid samples ------------------------------------------------------
        rotation = np.empty((m + 1, 3, 3))
        rotation[0] = st.rotation
        confidence = np.empty(m + 1)
        confidence[0] = st.confidence
        calibrated = np.empty(m + 1, bool)
        calibrated[0] = st.calibrated
        if m:
            counts = np.add.accumulate(moving[: grid[-1] + 1], dtype=np.intp)
            moving_count = st.moving_samples + counts[grid]
            v = vertical[1:]
            fwd = forward[:3, grid].T
            fwd_vec = fwd - dot3(fwd, v)[:, None] * v
            fwd_norm = norm3(fwd_vec)
            scale = forward[3, grid]
            confidence[1:] = np.where(scale > 0.0, fwd_norm / np.where(scale > 0, scale, 1.0), 0.0)
            calibrated[1:] = (moving_count >= self._min_moving) & (
                confidence[1:] >= s.min_coherence
            )
            rotation[1:] = _rotation(fwd_vec, v, calibrated[1:])
        # --- per input sample: group and running --------------------------------------------
        stop = n if change_at is None else change_at + 1
        g0 = first_d + first * d  # input index of the first grid sample
        group = (np.arange(stop) + (k * d - g0)) // (k * d)
        held = np.empty(stop_d + 1, bool)
        held[0] = self._running
        held[1:] = running
        running_full = held[(np.arange(stop) + (d - first_d)) // d]
        # --- carry state ----------------------------------------------------------------------
        if change_at is None:
            st.moving_samples += int(np.count_nonzero(moving))
            st.samples += n
            st.static_run, st.static_sum = run_len, run_sum
            st.standing_open = standing_open
            if has_standing[-1]:
                st.standing = standing[-1]
            st.vertical, st.rotation = vertical[-1], rotation[-1]
            st.confidence, st.calibrated = float(confidence[-1]), bool(calibrated[-1])
            self._prev_vertical_acc = float(a_vert[-1])
            self._last_flight_t = float(last_flight[-1])
            self._running = bool(running[-1])
        return MountPieces(
            group=group,
            rotation=rotation,
            vertical=vertical,
            confidence=confidence,
            calibrated=calibrated,
            standing_reference=has_standing,
            running=running_full,
            change_at=change_at,
        )

    def _hold(self, n: int) -> MountPieces:
        """Estimates for samples between decimated samples: the carried ones."""
        st = self._slow
        return MountPieces(
            group=np.zeros(n, np.intp),
            rotation=st.rotation[None],
            vertical=st.vertical[None],
            confidence=np.array([st.confidence]),
            calibrated=np.array([st.calibrated]),
            standing_reference=np.array([st.standing is not None]),
            running=np.full(n, self._running),
            change_at=None,
        )

    def _static_runs(self, acc_t: FloatArray, static: BoolArray) -> tuple[IntArray, FloatArray]:
        """Per sample: length and sum of the quasi-static run it ends (0 when not static).

        ``acc_t`` is the (3, n) acceleration; the sums have shape (n, 3).
        """
        st = self._slow
        acc = acc_t.T
        n = acc.shape[0]
        if not static.any():
            return np.zeros(n, np.intp), np.zeros((n, 3))
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
        return run_len, run_sum

    def _standing_at(
        self,
        lengths: IntArray,
        sums: FloatArray,
        standing: FloatArray | None,
        standing_open: bool,
    ) -> tuple[FloatArray, BoolArray, BoolArray]:
        """At the grid samples: standing vertical, whether it is set, whether its run is open.

        The first quasi-static run that lasts ``standing_s`` (seen at a grid sample) becomes the
        standing reference; it is refined while that run lasts, then frozen until the mount
        changes.
        """
        m = lengths.shape[0]
        if standing is not None and not standing_open:
            return np.broadcast_to(standing, (m, 3)), np.ones(m, bool), np.zeros(m, bool)
        if standing_open:
            first = 0
        else:
            hit = np.flatnonzero(lengths >= self._standing_n)
            if hit.size == 0:
                return np.zeros((m, 3)), np.zeros(m, bool), np.zeros(m, bool)
            first = int(hit[0])
        k = np.arange(m)
        # the run goes on from one grid sample to the next iff it grew by the grid spacing
        goes_on = lengths >= self._grid
        goes_on[first] |= not standing_open
        breaks = np.flatnonzero(~goes_on[first:])
        end = first + int(breaks[0]) if breaks.size else m
        open_ = (k >= first) & (k < end)
        direction = _normalize(sums)
        source = np.maximum.accumulate(np.where(open_, k, -1))
        has = source >= 0
        prior = np.zeros(3) if standing is None else standing
        out = np.where(has[:, None], direction[np.maximum(source, 0)], prior)
        return out, has | (standing is not None), open_


_NEXT = np.array([1, 2, 0])
_PREVIOUS = np.array([2, 0, 1])


def _rotation(forward: FloatArray, vertical: FloatArray, calibrated: BoolArray) -> FloatArray:
    """Rows forward, left, up from a horizontal forward vector and the vertical (n, 3, 3)."""
    rot = np.empty((forward.shape[0], 3, 3))
    x = _normalize(forward)
    rot[:, 0] = x
    left = vertical.take(_NEXT, axis=1) * x.take(_PREVIOUS, axis=1)
    left -= vertical.take(_PREVIOUS, axis=1) * x.take(_NEXT, axis=1)
    rot[:, 1] = _normalize(left)
    rot[:, 2] = vertical
    if not calibrated.all():
        rot[~calibrated] = np.eye(3)
    return rot


def _first_gap(t: FloatArray, start: int, rate_hz: float) -> int:
    """Index after the last sample of the gap-free run starting at ``start``."""
    rest = t[start:]
    jumps = np.greater(rest[1:] - rest[:-1], GAP_SAMPLES / rate_hz)
    return start + int(jumps.argmax()) + 1 if jumps.any() else t.shape[0]


def _cut(piece: MountPieces, stop: int) -> MountPieces:
    return MountPieces(
        group=piece.group[:stop],
        rotation=piece.rotation,
        vertical=piece.vertical,
        confidence=piece.confidence,
        calibrated=piece.calibrated,
        standing_reference=piece.standing_reference,
        running=piece.running[:stop],
        change_at=piece.change_at,
    )


def _concat(parts: list[MountTrack]) -> MountTrack:
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
