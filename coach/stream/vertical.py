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
  axis is the fore-aft axis. The sign comes from braking at initial contact:

  - running: the forward acceleration drops across initial contact and early stance brakes
    while late stance propels (Lee et al. 2010: peak fore-aft deceleration just after contact);
  - walking: the forward acceleration of the lower trunk rises slowly through swing to a peak
    just before heel strike and then drops sharply (Zijlstra & Hof 2003), so the steepest
    slope of the step-locked forward pattern is a fall. This holds wherever in the step the
    template is locked, so a sign decided this way does not depend on the contact timing.

  Left is then ``up x forward``.

Both are pure and causal; numbers are SI (m/s², s, Hz).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
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
        # Transfer-function form: a 2nd-order section is exact enough and scipy's lfilter has a
        # far smaller per-call cost than sosfilt (it matters for 4-sample live blocks).
        self._b, self._a = signal.butter(2, cutoff_hz, fs=rate_hz)
        self._zi_unit = signal.lfilter_zi(self._b, self._a)[:, None]
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
            low[settling:], self._zi = signal.lfilter(
                self._b, self._a, acc[settling:], axis=0, zi=self._zi
            )
        g = np.sqrt(low[:, 0] ** 2 + low[:, 1] ** 2 + low[:, 2] ** 2)
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
    along = acc[:, 0] * up[:, 0] + acc[:, 1] * up[:, 1] + acc[:, 2] * up[:, 2]
    return along - g, acc - along[:, None] * up


#: The step-locked template: bins of this width, s ...
TEMPLATE_BIN_S = 0.02
#: ... from this time before to this time after initial contact, s.
TEMPLATE_SPAN_S = (-0.24, 0.24)
#: Running sign evidence, s relative to initial contact: forward acceleration falls from
#: before to after contact, and the first part of stance brakes while the later part propels.
_BEFORE_S, _AFTER_S = (-0.06, -0.02), (0.02, 0.06)
_EARLY_S, _LATE_S = (-0.02, 0.10), (0.10, 0.18)
#: Walking: the steepest fall must be this much steeper than the steepest rise to flip the sign.
WALKING_SIGN_MARGIN = 1.2


def template_bins(rate_hz: float) -> tuple[int, NDArray[np.intp], FloatArray]:
    """Sample layout of the template at ``rate_hz``.

    Returns:
        ``(first, offsets, lengths)``: offset of the first template sample from the contact
        sample, the start of each bin relative to ``first`` (for ``np.add.reduceat``) and the
        number of samples in each bin (at least one).

    """
    count = round((TEMPLATE_SPAN_S[1] - TEMPLATE_SPAN_S[0]) / TEMPLATE_BIN_S)
    edges = [round((TEMPLATE_SPAN_S[0] + k * TEMPLATE_BIN_S) * rate_hz) for k in range(count + 1)]
    for i in range(1, len(edges)):  # contiguous bins of at least one sample
        edges[i] = max(edges[i], edges[i - 1] + 1)
    starts = np.array(edges[:-1])
    return edges[0], (starts - edges[0]).astype(np.intp), np.diff(edges).astype(float)


def _bins_in(span: tuple[float, float]) -> slice:
    first = round((span[0] - TEMPLATE_SPAN_S[0]) / TEMPLATE_BIN_S)
    last = round((span[1] - TEMPLATE_SPAN_S[0]) / TEMPLATE_BIN_S)
    return slice(first, last)


class ForwardAxisEstimator:
    """Direction of travel in the sensor frame from step-locked horizontal acceleration.

    Feed one step at a time with :meth:`add_step`: the mean horizontal acceleration (m/s²,
    sensor frame) in each :data:`TEMPLATE_BIN_S` bin of :data:`TEMPLATE_SPAN_S` around that
    step's initial contact (see :func:`template_bins`). The template is an exponential average
    over steps (``smoothing`` per step; the plain mean of all steps until there are
    ``1 / smoothing``). :meth:`update_axis` recomputes the axis from it - cheap (a 3 x 3
    eigenproblem), meant to be called at fixed sample counts rather than per step - and
    :attr:`axis` holds the result.

    Args:
        smoothing: weight of a new step in the template (0 < smoothing <= 1).
        min_steps: steps needed before an axis is reported.

    """

    def __init__(self, smoothing: float = 0.1, min_steps: int = 4) -> None:
        if not 0 < smoothing <= 1 or min_steps < 1:
            raise ValueError("need 0 < smoothing <= 1 and min_steps >= 1")
        self._alpha = smoothing
        self._min_steps = min_steps
        count = round((TEMPLATE_SPAN_S[1] - TEMPLATE_SPAN_S[0]) / TEMPLATE_BIN_S)
        self._template = np.zeros((count, 3))
        self._braking = np.zeros(count)  # weights: braking = weights @ forward pattern
        for span, sign in ((_AFTER_S, 1.0), (_BEFORE_S, -1.0), (_EARLY_S, 1.0), (_LATE_S, -1.0)):
            bins = _bins_in(span)
            self._braking[bins] += sign / (bins.stop - bins.start)
        self.reset()

    def reset(self) -> None:
        """Forget every step and the axis."""
        self._template[:] = 0.0
        self._steps = 0
        self._axis: FloatArray | None = None

    @property
    def steps(self) -> int:
        """Number of steps seen."""
        return self._steps

    @property
    def axis(self) -> FloatArray | None:
        """Unit forward axis in the sensor frame from the last :meth:`update_axis`, or None."""
        return self._axis

    def add_step(self, bin_means: FloatArray) -> None:
        """Add one step: ``bin_means`` of shape (bins, 3), m/s², sensor frame."""
        if bin_means.shape != self._template.shape or not np.isfinite(bin_means).all():
            return
        self._steps += 1
        alpha = max(1.0 / self._steps, self._alpha)
        self._template += alpha * (bin_means - self._template)

    def update_axis(self, up: FloatArray, running: bool) -> FloatArray | None:
        """Recompute :attr:`axis` (orthogonal to ``up``) from the template and return it.

        Args:
            up: current unit up vector, sensor frame.
            running: the recent steps had a flight phase (selects the sign rule).

        """
        if self._steps < self._min_steps:
            return self._axis
        projected = self._template @ up
        horizontal = self._template - projected[:, None] * up
        centred = horizontal - horizontal.sum(axis=0) / horizontal.shape[0]
        values, vectors = np.linalg.eigh(centred.T @ centred)
        if not values[-1] > 0.0:
            return self._axis
        axis: FloatArray = vectors[:, -1] - (vectors[:, -1] @ up) * up
        norm = float(np.sqrt(axis @ axis))
        if norm < 0.5:
            return self._axis
        axis = axis / norm
        if self._axis is not None and axis @ self._axis < 0.0:
            axis = -axis  # continuity; the sign rule below decides flips
        forward = horizontal @ axis
        if running:
            flip = float(self._braking @ forward) > 0.0
        else:
            slopes = np.diff(forward)
            fall, rise = -float(slopes.min()), float(slopes.max())
            margin = 1.0 if self._axis is None else WALKING_SIGN_MARGIN
            flip = rise > margin * fall
        self._axis = -axis if flip else axis
        return self._axis


def left_axis(up: FloatArray, forward: FloatArray) -> FloatArray:
    """Unit left axis ``up x forward`` (body frame x forward, y left, z up)."""
    left = np.array(
        (
            up[1] * forward[2] - up[2] * forward[1],
            up[2] * forward[0] - up[0] * forward[2],
            up[0] * forward[1] - up[1] * forward[0],
        )
    )
    return left / max(float(np.sqrt(left @ left)), _MIN_GRAVITY_NORM)
