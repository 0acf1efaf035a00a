"""Foot contacts (initial contact, toe-off) from one shank or foot IMU, in real time.

Gyroscope skeleton (Aminian et al. 2002; Salarian et al. 2004; real-time form after Lee & Park
2011 and Maqbool et al. 2017): on the sagittal angular velocity ω (forward swing > 0, found and
signed by :class:`~coach.stream.sagittal_axis.SagittalAxisEstimator` without knowing the mount),

* the mid-swing peak is a maximum of ω above half the recent swing amplitude;
* the contact minimum is the first minimum of ω after the mid-swing peak;
* the pre-swing minimum is the last minimum of ω before the next mid-swing peak.

Extrema are found causally with hysteresis (Billauer's peak-detection rule): a minimum is
confirmed as soon as ω has risen ``hysteresis_fraction`` of the swing amplitude above it. The
search is vectorised: numpy finds where each running extremum is confirmed, and a small state
machine runs only over those few confirmations and over the rises through the swing level (a
handful per stride), never per sample.

Initial contact (IC) is refined with the accelerometer: the foot strike is the steepest rise of
the specific-force magnitude |a| (the impact: tens of m/s² within 10–30 ms on a skin-mounted
shank IMU; foot-strike detectors time it from this rise of the tibial acceleration, Purcell et al.
2006, Mitschke et al. 2017), searched between the end of the forward swing (ω falling through
zero: the swing limb retracts before contact) and the contact minimum of ω, at most
``IMPACT_SEARCH_S`` back. Without such a rise (flat or missing accelerometer) IC is the contact
minimum of ω, which follows the force-plate contact by ~15–30 ms in running (Purcell et al. 2006
report +17 ms). The refinement adds no delay: the decision is still taken when the contact
minimum is confirmed (~10–25 ms after it).

Toe-off (TO):

* foot: the pre-swing minimum itself, the end of the push-off plantar flexion (Mariani et al.
  2010; Falbriard et al. 2018);
* shank, walking: the pre-swing minimum (Aminian 2002; Salarian 2004);
* shank, running: the pre-swing minimum lags toe-off by ~80–100 ms in running (the shank keeps
  accelerating backwards after the foot leaves the ground). Toe-off is the onset of that
  backward swing acceleration, i.e. the instant of fastest change of angular acceleration (most
  negative d²ω/dt², on ω smoothed over 20 ms) between the late-stance maximum of ω — where the
  shank stops rotating over the planted foot (Schmidt et al. 2016; Mo & Chow 2018 time running
  TO near this maximum) — and the pre-swing minimum. The switch is driven by the signal: the
  running form is used only when ω rebounds during stance above its contact minimum by at least
  30 % of the mid-swing peak (``RUNNING_REBOUND``; the shank stays near its contact minimum over
  a walking stance) and the stance it implies (IC to that onset) is shorter than
  45 % of the stride, i.e. a flight phase exists (stance < 50 % of the stride).

TO is emitted when ω rises through the swing level on its way to the mid-swing peak, so its
delay is long (≈ 0.1–0.3 s) and irrelevant for cues.

Gates against spurious contacts: mid-swing peaks closer than the shortest stride allowed by
``DetectionConfig.max_cadence_spm`` are one swing; an IC needs a swing of at least 60 % of a step
at that cadence and a mid-swing peak above ``MIN_PEAK_FRACTION`` of the running median of the last
accepted peaks (swing wiggles and turning steps are smaller); an IC not found within the
longest stride (``min_cadence_spm``) is given up.

Warm-up: nothing is detected until the axis is known, about 2 s (≈ 2 strides) of gait after the
start. On a time jump (gap) the extremum search restarts; the axis and amplitude are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coach.config import DetectionConfig
from coach.stream.sagittal_axis import SagittalAxisEstimator, Segment
from coach.types import EventKind, FloatArray, GaitEvent, SampleBlock, Side

#: A step in time longer than this many sample periods is a gap (alignment-stage contract).
GAP_SAMPLES = 1.5

#: Smallest mid-swing peak accepted, rad/s (slow walking still exceeds ~2 rad/s).
MIN_SWING_PEAK_RAD_S = 1.0

#: A mid-swing peak below this fraction of the median of the last accepted peaks is not a step.
MIN_PEAK_FRACTION = 0.4

#: Longest look-back of the IC refinement before the contact minimum of ω, s.
IMPACT_SEARCH_S = 0.06

#: Smallest rise of |a| across the steepest rise that counts as an impact, m/s² (0.3 g; a
#: foot strike raises the shank's |a| by 1-10 g, sensor noise by a few tenths of a m/s²).
IMPACT_MIN_RISE_M_S2 = 3.0

#: Smoothing of ω before the curvature search for running toe-off, s.
TOE_OFF_SMOOTH_S = 0.02

#: A stance shorter than this fraction of the stride means a flight phase exists (running).
RUNNING_DUTY_FACTOR = 0.45

#: In running, ω rebounds during stance from the contact minimum to about zero (knee flexion then
#: extension under the body); in walking it stays near the contact minimum while the shank rolls
#: over the foot. Running form needs a rebound of this fraction of the mid-swing peak.
RUNNING_REBOUND = 0.3

#: Samples processed per vectorised pass (bounds the cost of long blocks).
CHUNK = 512


@dataclass(slots=True)
class _Extremum:
    """A confirmed extremum of ω: absolute sample index, value, and where it was confirmed."""

    index: int
    value: float
    confirmed_at: int
    is_max: bool


class ShankContactDetector:
    """Initial contacts and toe-offs of one leg from its shank (or foot) IMU.

    Args:
        side: which leg the sensor is on; copied into every event.
        rate_hz: sampling rate of the incoming blocks, Hz (uniform).
        config: cadence limits (refractory periods).
        segment: ``"shank"`` or ``"foot"``.
        swing_fraction: a maximum counts as mid-swing when above this fraction of the swing
            amplitude (98th percentile of ω over the last 5 s).
        hysteresis_fraction: rise (fall) of ω, as a fraction of the swing amplitude, that
            confirms a minimum (maximum).
        refine_with_impact: time IC from the accelerometer impact where one is found.

    """

    def __init__(
        self,
        side: Side,
        rate_hz: float,
        config: DetectionConfig,
        segment: Segment = "shank",
        swing_fraction: float = 0.5,
        hysteresis_fraction: float = 0.1,
        refine_with_impact: bool = True,
    ) -> None:
        if rate_hz <= 0 or not math.isfinite(rate_hz):
            raise ValueError("rate_hz must be a positive number")
        self.side = side
        self.rate_hz = rate_hz
        self.segment = segment
        self._axis = SagittalAxisEstimator(rate_hz, segment)
        self._gap_s = GAP_SAMPLES / rate_hz
        self._min_stride_s = 0.75 * 120.0 / config.max_cadence_spm
        self._max_stride_s = 120.0 / config.min_cadence_spm
        # a foot swings for longer than one step at the fastest cadence (swing > step when
        # running with a flight phase); from the rise into swing (ω through half the swing
        # level) to contact at least 60 % of that remains (0.15 s at 240 spm); earlier minima
        # are swing wiggles
        self._min_swing_s = 0.6 * 60.0 / config.max_cadence_spm
        self._swing_fraction = swing_fraction
        self._hysteresis_fraction = hysteresis_fraction
        self._refine = refine_with_impact
        self._impact_n = max(2, math.ceil(IMPACT_SEARCH_S * rate_hz))
        self._smooth_n = max(1, round(TOE_OFF_SMOOTH_S * rate_hz))
        # history: one longest stride plus a chunk, for the look-backs of IC and TO
        self._capacity = math.ceil(self._max_stride_s * rate_hz) + CHUNK + 8
        self._t = np.zeros(self._capacity)
        self._w = np.zeros(self._capacity)
        self._a = np.zeros((self._capacity, 3))
        self.reset()

    def reset(self) -> None:
        """Forget everything (axis included), as for a new session."""
        self._axis.reset()
        self._last_t = -math.inf
        self._n = 0  # samples ever stored (absolute index of the next one)
        self._peaks: list[float] = []  # last accepted mid-swing peaks, rad/s
        self._stride_s = math.nan  # last IC-to-IC interval
        self._restart()

    def _restart(self) -> None:
        """Restart the extremum search (after a gap); slow state is kept."""
        self._segment_start = self._n  # first absolute index of the gap-free run
        self._seeking_max = True
        self._ext_val = -math.inf
        self._ext_idx = -1
        self._prev = math.nan
        self._last_min: _Extremum | None = None
        self._to_done = True
        self._swing_t = -math.inf  # last accepted mid-swing peak
        self._swing_val = 0.0
        self._awaiting_ic = False
        self._last_ic_t = -math.inf
        self._ic_idx = -1  # contact minimum of the last IC
        self._ic_rebound_needed = math.inf  # late-stance ω that marks a running stance
        self._rise_t = -math.inf  # first rise into swing (half the swing level) since the last IC
        self._stride_s = math.nan

    # ------------------------------------------------------------------ streaming
    def update(self, block: SampleBlock) -> list[GaitEvent]:
        """Consume one block; return the events decided within it, sorted by ``t``."""
        if block.gyr is None or len(block) == 0:
            return []
        t = block.t
        omega, amplitude = self._axis.update_with_amplitude(block.gyr)
        events: list[GaitEvent] = []
        if t[0] - self._last_t > self._gap_s and math.isfinite(self._last_t):
            self._restart()
        jumps = np.flatnonzero(np.diff(t) > self._gap_s) + 1 if len(t) > 1 else ()
        bounds = [0, *(int(j) for j in jumps), len(t)]
        for k in range(len(bounds) - 1):
            if k > 0:
                self._restart()
            for start in range(bounds[k], bounds[k + 1], CHUNK):
                stop = min(start + CHUNK, bounds[k + 1])
                self._process(
                    t[start:stop],
                    omega[start:stop],
                    amplitude[start:stop],
                    block.acc[start:stop],
                    events,
                )
        self._last_t = float(t[-1])
        events.sort(key=lambda e: e.t)
        return events

    def _store(self, t: FloatArray, w: FloatArray, a: FloatArray) -> int:
        """Append samples to the history; return the absolute index of the first one."""
        base = self._n
        m = len(t)
        pos = base % self._capacity
        first = min(m, self._capacity - pos)
        self._t[pos : pos + first] = t[:first]
        self._w[pos : pos + first] = w[:first]
        self._a[pos : pos + first] = a[:first]
        if first < m:
            self._t[: m - first] = t[first:]
            self._w[: m - first] = w[first:]
            self._a[: m - first] = a[first:]
        self._n += m
        return base

    def _history(self, buffer: FloatArray, start: int, stop: int) -> FloatArray:
        """Samples ``start:stop`` (absolute indices) of one history buffer."""
        first = start % self._capacity
        if first + (stop - start) <= self._capacity:
            return buffer[first : first + (stop - start)]
        return buffer[np.arange(start, stop) % self._capacity]

    def _process(
        self,
        t: FloatArray,
        w: FloatArray,
        amplitude: FloatArray,
        a: FloatArray,
        events: list[GaitEvent],
    ) -> None:
        base = self._store(t, w, a)
        amp = np.maximum(amplitude, MIN_SWING_PEAK_RAD_S / self._swing_fraction)
        delta = self._hysteresis_fraction * amp
        level = self._swing_fraction * amp
        seeking_max = self._seeking_max  # search state at the start of the chunk
        extrema = self._extrema(w, delta, base)
        previous = np.concatenate(([self._prev], w[:-1]))
        self._prev = float(w[-1])
        # rises into swing (half the swing level) and through the swing level, in sample order
        marks: list[tuple[int, bool]] = []
        for through_level, threshold in ((False, 0.5 * level), (True, level)):
            crossing = (previous < threshold) & (w >= threshold)
            if crossing.any():
                marks += [(int(i), through_level) for i in np.flatnonzero(crossing)]
        marks.sort()
        # state machine over the few decisions, in sample order (extremum before rise)
        mi = 0
        for ext in extrema:
            pos = ext.confirmed_at - base
            while mi < len(marks) and marks[mi][0] < pos:
                self._on_rise(float(t[marks[mi][0]]), marks[mi][1], seeking_max, events)
                mi += 1
            seeking_max = not ext.is_max
            if ext.is_max:
                self._on_max(ext, float(level[pos]))
            else:
                self._on_min(ext, float(t[pos]), float(amp[pos]), events)
                if w[pos] >= level[pos]:
                    self._emit_toe_off(float(t[pos]), events)
        for pos, through_level in marks[mi:]:
            self._on_rise(float(t[pos]), through_level, seeking_max, events)

    def _extrema(self, w: FloatArray, delta: FloatArray, base: int) -> list[_Extremum]:
        """Confirmed extrema (Billauer hysteresis) of one chunk, vectorised.

        Between confirmations numpy finds the first sample that falls ``delta`` below the running
        maximum (or rises above the running minimum); only confirmations cost Python steps.
        NaN samples (axis not yet known, bad data) are never extrema.
        """
        out: list[_Extremum] = []
        clean = bool(np.isfinite(w).all())
        if not clean:
            w = np.where(np.isfinite(w), w, np.nan)
        p = 0
        n = len(w)
        while p < n:
            seg = w[p:]
            if self._seeking_max:
                running = np.fmax.accumulate(seg)
                np.fmax(running, self._ext_val, out=running)
                beyond = seg < running - delta[p:]
            else:
                running = np.fmin.accumulate(seg)
                np.fmin(running, self._ext_val, out=running)
                beyond = seg > running + delta[p:]
            first = int(beyond.argmax())
            hit = bool(beyond[first])
            stop = first if hit else n - p
            if stop > 0 and running[stop - 1] != self._ext_val:
                # the running extremum moved within seg[:stop]: its first occurrence
                head = seg[:stop]
                if clean:
                    j = int(np.argmax(head) if self._seeking_max else np.argmin(head))
                else:
                    j = int(np.flatnonzero(head == running[stop - 1])[0])
                self._ext_val, self._ext_idx = float(head[j]), base + p + j
            if not hit:
                break
            confirm = p + stop
            out.append(_Extremum(self._ext_idx, self._ext_val, base + confirm, self._seeking_max))
            self._seeking_max = not self._seeking_max
            self._ext_val, self._ext_idx = float(w[confirm]), base + confirm
            p = confirm + 1
        return out

    # ------------------------------------------------------------------ decisions
    def _refined(self, ext: _Extremum) -> tuple[float, float]:
        """Time and value of an extremum, by a parabola through its neighbours."""
        i = ext.index
        t_ext = float(self._t[i % self._capacity])
        if i - 1 < max(self._segment_start, self._n - self._capacity) or i + 1 >= self._n:
            return t_ext, ext.value
        y0 = float(self._w[(i - 1) % self._capacity])
        y2 = float(self._w[(i + 1) % self._capacity])
        curvature = y0 - 2.0 * ext.value + y2
        if not math.isfinite(curvature) or curvature == 0.0:
            return t_ext, ext.value
        shift = min(0.5, max(-0.5, 0.5 * (y0 - y2) / curvature))
        return t_ext + shift / self.rate_hz, ext.value - 0.25 * (y0 - y2) * shift

    def _on_max(self, ext: _Extremum, swing_level: float) -> None:
        t_peak, value = float(self._t[ext.index % self._capacity]), ext.value
        if value < swing_level:
            return
        if self._peaks and value < MIN_PEAK_FRACTION * sorted(self._peaks)[len(self._peaks) // 2]:
            return  # a wiggle or a turning step, far below this runner's recent swings
        if t_peak - self._swing_t < self._min_stride_s:
            if value > self._swing_val and self._awaiting_ic:
                self._swing_t, self._swing_val = t_peak, value  # a better peak of the same swing
            return
        self._swing_t, self._swing_val = t_peak, value
        self._awaiting_ic = True

    def _on_min(
        self, ext: _Extremum, now: float, amplitude: float, events: list[GaitEvent]
    ) -> None:
        t_min, value = float(self._t[ext.index % self._capacity]), ext.value
        if self._awaiting_ic:
            if t_min - self._swing_t > self._max_stride_s:
                self._awaiting_ic = False
            elif (
                value < self._swing_val - 0.5 * amplitude
                and t_min >= self._rise_t + self._min_swing_s
            ):
                self._awaiting_ic = False
                self._peaks = [*self._peaks[-4:], self._swing_val]
                t_ic = self._impact_time(ext.index) if self._refine else math.nan
                if math.isnan(t_ic):
                    t_ic = self._refined(ext)[0]
                if math.isfinite(self._last_ic_t):
                    gap = t_ic - self._last_ic_t
                    self._stride_s = gap if gap <= self._max_stride_s else math.nan
                self._last_ic_t = t_ic
                self._ic_idx = ext.index
                self._ic_rebound_needed = value + RUNNING_REBOUND * self._swing_val
                self._last_min = None
                self._to_done = False
                events.append(GaitEvent(t_ic, now, EventKind.INITIAL_CONTACT, self.side))
                return
        if t_min > self._last_ic_t:
            self._last_min = ext
            if not math.isfinite(self._last_ic_t):
                self._to_done = False

    def _on_rise(
        self, now: float, through_level: bool, seeking_max: bool, events: list[GaitEvent]
    ) -> None:
        if not through_level:
            if self._rise_t <= self._last_ic_t:
                self._rise_t = now  # the swing starts
            return
        if seeking_max:
            self._emit_toe_off(now, events)

    def _emit_toe_off(self, now: float, events: list[GaitEvent]) -> None:
        if self._to_done or self._last_min is None:
            return
        self._to_done = True
        t_to = self._toe_off_time(self._last_min)
        events.append(GaitEvent(t_to, now, EventKind.TOE_OFF, self.side))

    def _impact_time(self, i_min: int) -> float:
        """Foot strike from the accelerometer: steepest rise of |a| before i_min.

        Returns NaN when no rise is found (the caller keeps the gyroscope minimum).
        """
        lo = max(self._segment_start, self._n - self._capacity, i_min - self._impact_n)
        if i_min - lo < 2:
            return math.nan
        w = self._history(self._w, lo, i_min + 1)
        # start where the forward swing ended (ω falling through zero)
        down = np.flatnonzero((w[:-1] > 0.0) & (w[1:] <= 0.0))
        first = int(down[-1]) if down.size else 0
        acc = self._history(self._a, lo + first, i_min + 1)
        a = np.sqrt(acc[:, 0] * acc[:, 0] + acc[:, 1] * acc[:, 1] + acc[:, 2] * acc[:, 2])
        if a.size < 3 or not np.isfinite(a).all():
            return math.nan
        slope = a[1:] - a[:-1]
        steepest = int(np.argmax(slope))
        if float(a[steepest + 1 :].max() - a[: steepest + 1].min()) < IMPACT_MIN_RISE_M_S2:
            return math.nan  # no impact: noise, or a missing accelerometer
        # the steepest rise lies between these two samples
        return float(self._t[(lo + first + steepest) % self._capacity]) + 0.5 / self.rate_hz

    def _toe_off_time(self, pre_swing: _Extremum) -> float:
        """TO from the pre-swing minimum (foot, walking) or the swing-acceleration onset."""
        t_min = self._refined(pre_swing)[0]
        if self.segment != "shank" or self._ic_idx < 0 or not math.isfinite(self._stride_s):
            return t_min
        lo = max(self._ic_idx, self._segment_start, self._n - self._capacity)
        hi = pre_swing.index
        if hi - lo < 4:
            return t_min
        w = self._history(self._w, lo, hi + 1)
        top = int(np.argmax(w))  # late-stance maximum: the shank stops rotating over the foot
        if w[top] < self._ic_rebound_needed:
            return t_min  # no running stance rebound: walking
        half = self._smooth_n // 2
        kernel = np.full(2 * half + 1, 1.0 / (2 * half + 1))
        smooth = np.convolve(w, kernel, mode="same")
        inner = slice(max(top, half + 1), len(w) - half - 1)
        curvature = (
            smooth[inner.start - 1 : inner.stop - 1]
            - 2.0 * smooth[inner]
            + smooth[inner.start + 1 : inner.stop + 1]
        )
        if curvature.size == 0:
            return t_min
        k = int(np.argmin(curvature))
        shift = 0.0
        if 0 < k < curvature.size - 1:
            c0, c1, c2 = curvature[k - 1], curvature[k], curvature[k + 1]
            den = c0 - 2.0 * c1 + c2
            if den > 0.0:
                shift = min(0.5, max(-0.5, 0.5 * (c0 - c2) / den))
        j = inner.start + k
        t_knee = float(self._t[(lo + j) % self._capacity]) + float(shift) / self.rate_hz
        stance = t_knee - self._last_ic_t
        if 0.0 < stance < RUNNING_DUTY_FACTOR * self._stride_s:
            return t_knee
        return t_min
