"""Self-calibrating sagittal angular velocity of a shank or foot sensor clipped on at any angle.

The sagittal (mediolateral) axis is the dominant axis of angular velocity during gait: it is
found as the principal component of the gyroscope over the last few strides (``window_s``). It is
recomputed every ``update_every_s`` until the first decision and while the axis or the swing
amplitude is still changing (> 5° or > 10 % between recomputations, e.g. when the gait starts or
the pace changes), and every ``refresh_every_s`` once settled. Recomputations happen at fixed
sample counts, so the result never depends on how samples are split into blocks. Standing still
or noise (no dominant axis) leaves the axis unchanged.

Its sign is fixed from the gait pattern, with the convention that the output is POSITIVE while
the segment swings forward (shank: foot moving forward at mid-swing; foot: toes lifting), as in
Aminian et al. 2002 and Salarian et al. 2004:

* shank: the mid-swing peak is the largest excursion of sagittal angular velocity (Salarian
  2004; Lee & Park 2011), so the sign that makes the upper extreme the larger one wins;
* foot: the push-off plantar flexion just before toe-off is the largest excursion (Mariani et al.
  2010; Falbriard et al. 2018), in the direction opposite to the forward swing.

Extremes are taken as the 1st/99th percentiles after a ~30 ms running median (3 samples of the
window thinned to at most 100 Hz), so impact spikes of a few samples do not decide the sign. A
verdict is clear when one extreme exceeds the other by ``CLEAR_RATIO``.

The first steps of a walk are atypical (gait initiation: a small first swing, a lurch), so the
first decision waits for ``min_motion_s`` of gait in the window (samples whose angular rate
exceeds ``MOVING_RATE_RAD_S``, not merely samples since the start: standing does not count) and
for a clear verdict; after ``UNCLEAR_SIGN_MOTION_S`` of gait without one (running feet, whose
push-off and swing peaks can be nearly equal) it takes the best verdict it has. During its first
``YOUNG_VERDICTS`` clear verdicts a young sign flips on one clear contrary verdict; after that
only on ``CONTRARY_VERDICTS`` clear contrary verdicts with no clear agreeing one between them,
and a contrary verdict brings back fast recomputations. Until the first decision (about 1-2
strides of gait) the output is NaN.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from coach.types import FloatArray

Segment = Literal["shank", "foot"]

_COS_5_DEG = 0.9962  # an axis change above 5° (or amplitude change above 10 %) is a change
_FAST_RECOMPUTATIONS = 4

#: A sample counts as gait (not standing) when the gyroscope norm exceeds this, rad/s.
MOVING_RATE_RAD_S = 1.0

#: Clear contrary sign verdicts, with no clear agreeing one between them, that flip the sign.
CONTRARY_VERDICTS = 3

#: Within its first this many clear verdicts, a young sign flips on one clear contrary verdict
#: (the first steps of a walk are atypical; later the sign is settled and needs repeated
#: evidence).
YOUNG_VERDICTS = 6

#: Gait in the window after which the first sign is taken even without a clear verdict, s
#: (running feet: push-off and swing peaks can be nearly equal).
UNCLEAR_SIGN_MOTION_S = 2.5

#: A sign verdict is clear when one extreme exceeds the other by this factor.
CLEAR_RATIO = 1.1


class SagittalAxisEstimator:
    """Streaming estimate of a segment's sagittal angular velocity, rad/s (forward swing > 0).

    Args:
        rate_hz: sampling rate of the gyroscope, Hz.
        segment: ``"shank"`` or ``"foot"`` (fixes how the sign is read from the gait pattern).
        window_s: length of the recent history the axis is computed from, s.
        update_every_s: how often the axis is recomputed before the first decision and while
            it is changing, s.
        refresh_every_s: how often it is recomputed once known, s (a mount moves slowly).
        min_motion_s: gait (moving samples) needed in the window before the first decision, s.
        min_rate_rad_s: RMS angular rate along the dominant axis below which the window is
            treated as standing (axis left unchanged), rad/s.
        refine_gain: weight of a new estimate in the slow refinement (0 to 1).

    """

    def __init__(
        self,
        rate_hz: float,
        segment: Segment = "shank",
        window_s: float = 5.0,
        update_every_s: float = 0.5,
        refresh_every_s: float = 4.0,
        min_motion_s: float = 0.7,
        min_rate_rad_s: float = 0.5,
        refine_gain: float = 0.2,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        self._segment = segment
        self._capacity = max(8, round(window_s * rate_hz))
        self._every_first = max(1, round(update_every_s * rate_hz))
        self._every_known = max(1, round(refresh_every_s * rate_hz))
        self._min_samples = max(4, round(min_motion_s * rate_hz))
        self._min_var = min_rate_rad_s**2
        self._gain = refine_gain
        # the statistics use at most 100 samples per second of the window (cheaper, same answer):
        # there, a 3-sample running median spans the ~30 ms that an impact spike lasts
        self._stride = max(1, math.ceil(rate_hz / 100.0))
        self._min_moving = max(4, round(min_motion_s * rate_hz / self._stride))
        self._patient_moving = max(4, round(UNCLEAR_SIGN_MOTION_S * rate_hz / self._stride))
        self._buffer = np.zeros((self._capacity, 3))
        self.reset()

    def reset(self) -> None:
        """Forget everything, including the axis."""
        self._buffer[:] = 0.0
        self._count = 0  # samples ever appended (ring position = count % capacity)
        self._axis: FloatArray | None = None
        self._contrary = 0
        self._verdicts = 0  # clear sign verdicts so far
        self._amplitude = 0.0
        self._unsettled = 0  # fast recomputations still owed after a change

    @property
    def axis(self) -> FloatArray | None:
        """Unit vector in the sensor frame (forward swing = positive rotation), or None."""
        return None if self._axis is None else self._axis.copy()

    @property
    def swing_amplitude(self) -> float:
        """Typical mid-swing peak of the sagittal rate over the window (98th pct.), rad/s."""
        return self._amplitude

    def update(self, gyr: FloatArray) -> FloatArray:
        """Project a block of angular rates (n, 3), rad/s, on the sagittal axis.

        Returns:
            sagittal angular rate, rad/s, shape (n,); NaN while the axis is unknown.

        """
        return self.update_with_amplitude(gyr)[0]

    def update_with_amplitude(self, gyr: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Like :meth:`update`, also returning the swing amplitude in force at each sample.

        Returns:
            (sagittal angular rate, swing amplitude), rad/s, both shape (n,); the amplitude is
            the value of :attr:`swing_amplitude` when that sample was projected (0 before the
            first decision), so it never depends on how samples are split into blocks.

        """
        n = gyr.shape[0]
        out = np.full(n, np.nan)
        amplitude = np.empty(n)
        start = 0
        while start < n:
            fast = self._axis is None or self._unsettled > 0
            every = self._every_first if fast else self._every_known
            # next recomputation happens right after the sample that makes count % every == 0
            stop = min(n, start + every - (self._count % every))
            part = gyr[start:stop]
            axis = self._axis
            if axis is not None:
                # element-wise products: bit-identical whatever the block length (no BLAS)
                out[start:stop] = part[:, 0] * axis[0] + part[:, 1] * axis[1] + part[:, 2] * axis[2]
            amplitude[start:stop] = self._amplitude
            self._append(part)
            if self._count % every == 0:
                self._recompute()
            start = stop
        return out, amplitude

    def _append(self, part: FloatArray) -> None:
        pos = self._count % self._capacity
        m = part.shape[0]
        if pos + m <= self._capacity:
            self._buffer[pos : pos + m] = part
        else:
            idx = (pos + np.arange(m)) % self._capacity
            self._buffer[idx] = part
        self._count += m

    def _window(self) -> FloatArray:
        if self._count < self._capacity:
            return self._buffer[: self._count]
        pos = self._count % self._capacity
        return np.concatenate((self._buffer[pos:], self._buffer[:pos]))

    def _recompute(self) -> None:
        if self._count < self._min_samples:
            return
        window = self._window()[:: self._stride]
        if self._axis is None:
            moving = int(np.count_nonzero((window * window).sum(axis=1) > MOVING_RATE_RAD_S**2))
            if moving < self._min_moving:
                return  # too little gait yet (standing, the first step): wait for more
        centred = window - window.mean(axis=0)
        values, vectors = np.linalg.eigh(centred.T @ centred / len(window))
        if not np.all(np.isfinite(values)):
            return
        if values[2] < self._min_var or values[2] < 1.4 * values[1]:
            return  # standing, or no dominant rotation axis: keep what we have
        candidate = vectors[:, 2]
        previous_axis, previous_amplitude = self._axis, self._amplitude
        if self._axis is not None:
            if float(candidate @ self._axis) < 0:
                candidate = -candidate
            refined = self._axis + self._gain * (candidate - self._axis)
            candidate = refined / np.linalg.norm(refined)
        rate = _median3(window @ candidate)
        k_low, k_high = round(0.01 * (len(rate) - 1)), round(0.99 * (len(rate) - 1))
        ordered = np.partition(rate, (k_low, k_high))
        low, high = float(ordered[k_low]), float(ordered[k_high])
        upper_larger = high >= -low
        forward_is_upper = upper_larger if self._segment == "shank" else not upper_larger
        clear = max(high, -low) > CLEAR_RATIO * min(high, -low)
        if clear:
            self._verdicts += 1
        if self._axis is None:
            if not clear and moving < self._patient_moving:
                return  # no clear sign yet: wait for more gait, then take the best verdict
            self._axis = candidate if forward_is_upper else -candidate
        elif not clear:
            self._axis = candidate  # no verdict: neither confirms nor contradicts
        elif forward_is_upper:
            self._axis = candidate
            self._contrary = 0
        else:
            self._contrary += 1
            self._axis = candidate
            needed = 1 if self._verdicts < YOUNG_VERDICTS else CONTRARY_VERDICTS
            if self._contrary >= needed:
                self._axis = -candidate
                self._contrary = 0
        # 98th percentile of the signed rate (forward swing positive)
        k = round(0.98 * (len(rate) - 1))
        signed = rate if float(candidate @ self._axis) > 0 else -rate
        self._amplitude = float(np.partition(signed, k)[k])
        changed = (
            previous_axis is None
            or abs(float(previous_axis @ self._axis)) < _COS_5_DEG
            or abs(self._amplitude - previous_amplitude) > 0.1 * previous_amplitude
        )
        if changed or self._contrary:
            self._unsettled = _FAST_RECOMPUTATIONS  # check again soon
        else:
            self._unsettled = max(0, self._unsettled - 1)


def _median3(x: FloatArray) -> FloatArray:
    """Running median of 3 samples (edges repeat the nearest sample)."""
    if x.size < 3:
        return x.copy()
    a, b, c = x[:-2], x[1:-1], x[2:]
    inner = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return np.concatenate((x[:1], inner, x[-1:]))
