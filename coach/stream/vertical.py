"""Vertical and horizontal acceleration of a trunk sensor with an unknown mount.

Two small, reusable pieces for algorithms that need "up" and "forward" but must not wait for a
full mount calibration:

* :class:`GravityTracker` - causal estimate of the up direction in the sensor frame: a
  2nd-order Butterworth low-pass (default 0.3 Hz) of the specific force, normalised. At
  rest the accelerometer reads +g along "up", and over a few strides the body's linear
  acceleration averages out, so the low-passed vector points up (Moe-Nilssen 1998, "A new
  method for evaluating motor control in gait under real-life environmental conditions").
  :func:`split_vertical` then gives the vertical dynamic acceleration (m/s², + up, gravity
  removed using the tracked magnitude, so accelerometer scale errors cancel) and the
  horizontal part (m/s², 3-vector in the sensor frame, orthogonal to up).
* :class:`ForwardAxisEstimator` - the direction of travel in the sensor frame, learned from
  step-locked horizontal acceleration. The fore-aft acceleration of the trunk repeats with
  every step while the mediolateral one alternates sign between left and right steps, so in
  the step-locked average (both sides pooled) only the fore-aft pattern survives; its principal
  axis is the fore-aft axis. The sign comes from braking: in walking and in running the
  forward acceleration drops sharply at initial contact (Zijlstra & Hof 2003, walking: peak
  forward acceleration just before contact, then deceleration; Lee et al. 2010, running: peak
  fore-aft deceleration just after contact), and early stance brakes while late stance
  propels. Left is then ``up x forward``.

Both are pure and causal; numbers are SI (m/s², s, Hz).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from coach.types import FloatArray

#: Cut-off of the gravity low-pass, Hz: well below the slowest step frequency (~1.6 Hz).
GRAVITY_CUTOFF_HZ = 0.3
#: Norm below which a low-passed acceleration carries no direction, m/s².
_MIN_GRAVITY_NORM = 1e-6


class GravityTracker:
    """Causal up-direction estimate from the accelerometer alone.

    Args:
        rate_hz: sample rate, Hz.
        cutoff_hz: low-pass cut-off, Hz.
        settle_s: length of the start-up phase, s.

    During the first ``settle_s`` the estimate is the mean of all samples so far (so a start in
    the middle of a run, e.g. in a flight phase, does not throw it off); then the low-pass
    takes over, started in steady state at that mean. It is slow state: keep it across data
    gaps.

    """

    def __init__(
        self, rate_hz: float, cutoff_hz: float = GRAVITY_CUTOFF_HZ, settle_s: float = 2.0
    ) -> None:
        if not rate_hz > 0 or not 0 < cutoff_hz < rate_hz / 2 or settle_s < 0:
            raise ValueError("need rate_hz > 0, 0 < cutoff_hz < rate_hz / 2 and settle_s >= 0")
        self._sos = signal.butter(2, cutoff_hz, fs=rate_hz, output="sos")
        self._zi_unit = signal.sosfilt_zi(self._sos)[:, :, None]
        self._settle_samples = max(1, round(settle_s * rate_hz))
        self.reset()

    def reset(self) -> None:
        """Forget the estimate; the next sample restarts it."""
        self._zi: FloatArray | None = None
        self._sum = np.zeros(3)
        self._count = 0

    def update(self, acc: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Track gravity over consecutive samples.

        Args:
            acc: specific force, m/s², shape (n, 3), sensor frame.

        Returns:
            ``(up, g)``: unit up vector per sample, shape (n, 3), and the magnitude of the
            low-passed specific force, m/s², shape (n,).

        """
        n = acc.shape[0]
        low = np.empty((n, 3))
        settling = min(n, self._settle_samples - self._count) if self._zi is None else 0
        if settling > 0:
            sums = np.cumsum(np.vstack((self._sum, acc[:settling])), axis=0)[1:]
            low[:settling] = sums / (self._count + np.arange(1, settling + 1))[:, None]
            self._sum = sums[-1]
            self._count += settling
            if self._count >= self._settle_samples:
                self._zi = self._zi_unit * low[settling - 1]
        if settling < n:
            assert self._zi is not None
            low[settling:], self._zi = signal.sosfilt(
                self._sos, acc[settling:], axis=0, zi=self._zi
            )
        g = np.sqrt(np.einsum("ij,ij->i", low, low))
        up = low / np.maximum(g, _MIN_GRAVITY_NORM)[:, None]
        return up, g


def split_vertical(acc: FloatArray, up: FloatArray, g: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Vertical dynamic acceleration and the horizontal part of ``acc``.

    Args:
        acc: specific force, m/s², shape (n, 3).
        up: unit up vector per sample, shape (n, 3) (from :class:`GravityTracker`).
        g: gravity magnitude per sample, m/s², shape (n,).

    Returns:
        ``(a_vertical, a_horizontal)``: m/s², + up, zero on average, shape (n,); and the
        horizontal component in the sensor frame, m/s², shape (n, 3).

    """
    along = np.einsum("ij,ij->i", acc, up)
    return along - g, acc - along[:, None] * up


#: Sub-windows of the step-locked template, s relative to initial contact (start, stop).
TEMPLATE_WINDOWS_S: tuple[tuple[float, float], ...] = (
    (-0.06, -0.02),
    (-0.02, 0.02),
    (0.02, 0.06),
    (0.06, 0.10),
    (0.10, 0.14),
    (0.14, 0.18),
)
#: Template windows compared for the braking sign: forward acceleration falls across initial
#: contact (window 0 -> 2; Zijlstra & Hof 2003, strongest in walking) and, in running, the
#: braking first part of stance is followed by propulsion (windows 1-3 -> 4-5).
_BEFORE, _AFTER = 0, 2
_EARLY, _LATE = slice(1, 4), slice(4, 6)
#: The braking sign is averaged this many times more slowly than the template (a sign flip of
#: the forward axis would swap every side).
SIGN_SMOOTHING_RATIO = 0.2


class ForwardAxisEstimator:
    """Direction of travel in the sensor frame from step-locked horizontal acceleration.

    Feed one step at a time with :meth:`add_step`: the mean horizontal acceleration (m/s²,
    sensor frame) in each of :data:`TEMPLATE_WINDOWS_S` around that step's initial contact.
    The template is an exponential average over steps (``smoothing`` per step; the plain
    mean of all steps until there are ``1 / smoothing``); the braking change that fixes the
    sign is averaged :data:`SIGN_SMOOTHING_RATIO` times more slowly.

    Args:
        smoothing: weight of a new step in the template (0 < smoothing <= 1).
        min_steps: steps needed before :attr:`forward` is reported.

    """

    def __init__(self, smoothing: float = 0.1, min_steps: int = 6) -> None:
        if not 0 < smoothing <= 1 or min_steps < 1:
            raise ValueError("need 0 < smoothing <= 1 and min_steps >= 1")
        self._alpha = smoothing
        self._min_steps = min_steps
        self._template = np.zeros((len(TEMPLATE_WINDOWS_S), 3))
        self._braking = np.zeros(3)
        self._steps = 0

    def reset(self) -> None:
        """Forget every step."""
        self._template[:] = 0.0
        self._braking = np.zeros(3)
        self._steps = 0

    @property
    def steps(self) -> int:
        """Number of steps seen."""
        return self._steps

    def add_step(self, window_means: FloatArray, running: bool = True) -> None:
        """Add one step.

        Args:
            window_means: shape (len(TEMPLATE_WINDOWS_S), 3), m/s², sensor frame.
            running: the step had a flight phase before it; the brake-then-propel contrast
                of stance then adds to the sign evidence (in walking it is too weak).

        """
        if window_means.shape != self._template.shape or not np.isfinite(window_means).all():
            return
        self._steps += 1
        # Averages of all steps so far until 1/weight steps, exponential after that.
        alpha = max(1.0 / self._steps, self._alpha)
        self._template += alpha * (window_means - self._template)
        braking = window_means[_AFTER] - window_means[_BEFORE]
        if running:
            braking = braking + window_means[_EARLY].mean(axis=0) - window_means[_LATE].mean(axis=0)
        self._braking += max(1.0 / self._steps, self._alpha * SIGN_SMOOTHING_RATIO) * (
            braking - self._braking
        )

    def forward(self, up: FloatArray) -> FloatArray | None:
        """Unit forward axis in the sensor frame (orthogonal to ``up``), or None if unknown.

        Args:
            up: current unit up vector, sensor frame.

        """
        if self._steps < self._min_steps:
            return None
        horizontal = self._template - np.outer(self._template @ up, up)
        centred = horizontal - horizontal.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred)
        if singular[0] <= 0.0:
            return None
        axis: FloatArray = vt[0] - (vt[0] @ up) * up
        norm = float(np.linalg.norm(axis))
        if norm < 0.5:
            return None
        axis = axis / norm
        if self._braking @ axis > 0.0:
            axis = -axis
        return axis


def left_axis(up: FloatArray, forward: FloatArray) -> FloatArray:
    """Unit left axis ``up x forward`` (body frame x forward, y left, z up)."""
    left: FloatArray = np.cross(up, forward)
    return left / max(float(np.linalg.norm(left)), _MIN_GRAVITY_NORM)
