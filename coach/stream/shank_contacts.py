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

Initial contact (IC) is timed and decided from the accelerometer, as early as the signal allows:
the foot strike is the steepest rise of the specific-force magnitude |a| (the impact: tens of
m/s² within 10–30 ms on a skin-mounted shank IMU; foot-strike detectors time it from this rise of
the tibial acceleration, Purcell et al. 2006, Mitschke et al. 2017). Once a mid-swing peak has
been seen, the search is armed when ω falls through zero (the swing limb retracts before
contact; IC follows 15–30 ms later in running). The impact is the first rise of |a| by
``IMPACT_TURN_M_S2`` above its running minimum from there (or from the trough just before, when
|a| is already rising); it is decided as soon as the slope of |a| has fallen below
``IMPACT_SLOPE_DROP`` of its steepest, typically 5–15 ms after contact, long before the contact
minimum of ω is confirmed. A rise later than ``IMPACT_LATEST_S`` after the swing end is stance
kinematics, not the impact (at ≤ 100 Hz the sensor's anti-alias filter can remove the impact
entirely): then IC is the sharpest bend of |a| before it (where its late-swing fall stopped),
decided at ``IMPACT_LATEST_S`` after the swing end, or nothing when |a| shows no bend of
``IMPACT_MIN_RISE_M_S2``. Without any of this (flat or missing accelerometer) IC falls back to
the contact minimum of ω, decided when that minimum is confirmed (~10–25 ms after it), timed by
the steepest rise of |a| before it where one exists, else the minimum itself, which follows the
force-plate contact by ~15–30 ms in running (Purcell et al. 2006 report +17 ms).

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
accepted peaks (swing wiggles and turning steps are smaller; that reference is capped at
``PEAK_CAP`` times the swing amplitude so that one outlier cannot lock out later swings); an IC
not found within the longest stride (``min_cadence_spm``) is given up. A maximum of ω within
that same 60 % of a step after an IC is the contact's own rebound (foot slap, impact
vibration), not a swing: the foot cannot have left the ground yet. The contact minimum lies
below zero: at contact the shank rotates backwards and the foot plantar-flexes onto the ground
(foot slap after heel strike, Mariani et al. 2010); the dip of ω between the mid-swing peak and
the terminal-swing dorsiflexion of a foot stays positive and is not a contact.

Warm-up: nothing is detected until the axis and its sign are known, after about 1-2 strides of
gait (see :mod:`coach.stream.sagittal_axis`). On a time jump (gap) the extremum search restarts;
the axis and amplitude are kept.
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

#: The reference of that gate is at most this multiple of the swing amplitude (98th
#: percentile of ω over the last 5 s).
PEAK_CAP = 2.0

#: Longest look-back of the IC refinement before the contact minimum of ω, s.
IMPACT_SEARCH_S = 0.06

#: Smallest rise of |a| across the steepest rise that counts as an impact, m/s² (0.3 g; a
#: foot strike raises the shank's |a| by 1-10 g, sensor noise by a few tenths of a m/s²); also
#: the smallest bend (second difference) of |a| that marks a contact without an impact.
IMPACT_MIN_RISE_M_S2 = 3.0

#: Rise of |a| above its minimum since the swing ended that starts an impact, m/s² (at 100 Hz
#: a filtered impact may add only 2-5 m/s²; only rises that begin early are accepted).
IMPACT_TURN_M_S2 = 1.5

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

#: Longest wait for the impact after the swing ends (ω falling through zero), s.
IMPACT_WINDOW_S = 0.12

#: How far before the swing end the rise of the impact may start, s.
IMPACT_LOOKBACK_S = 0.03

#: Latest impact after the swing end (ω through zero), s: IC follows it by 15-30 ms in running,
#: less in walking; a later rise of |a| is stance kinematics.
IMPACT_LATEST_S = 0.035

#: The impact's rise is over once the slope of |a| falls below this fraction of its steepest.
IMPACT_SLOPE_DROP = 0.5

# kinds of ω crossings, in the order they are handled when they fall on the same sample
_HALF_LEVEL, _LEVEL, _SWING_END, _SWING_RESUMED = 1, 2, 3, 4


@dataclass(slots=True)
class _Extremum:
    """A confirmed extremum of ω: absolute sample index, value, and where it was confirmed."""

    index: int
    value: float
    confirmed_at: int
    is_max: bool


def _vertex(y: FloatArray, k: int) -> float:
    """Sub-sample offset of the maximum ``y[k]`` by a parabola through its neighbours."""
    if k <= 0 or k + 1 >= y.size:
        return 0.0
    y0, y1, y2 = float(y[k - 1]), float(y[k]), float(y[k + 1])
    den = y0 - 2.0 * y1 + y2
    if not den < 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (y0 - y2) / den))


def _sharpest_bend(a: FloatArray, first: int, stop: int, least: float = -math.inf) -> float:
    """Fractional index of the largest second difference of ``a`` over samples first..stop-1.

    NaN when there is none, or when it is below ``least``.
    """
    if stop <= first:
        return math.nan
    bend = a[first - 1 : stop - 1] - 2.0 * a[first:stop] + a[first + 1 : stop + 1]
    j = int(bend.argmax())
    if not bend[j] >= least:
        return math.nan
    return first + j + _vertex(bend, j)


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
        self._impact_window_n = max(4, math.ceil(IMPACT_WINDOW_S * rate_hz))
        self._lookback_n = max(1, math.ceil(IMPACT_LOOKBACK_S * rate_hz))
        self._impact_late_n = IMPACT_LATEST_S * rate_hz
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
        self._prev_forward = 0  # whether the last ω was > 0
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
        self._contact_pending = False  # IC emitted from the impact, contact minimum still ahead
        self._disarm()

    def _disarm(self) -> None:
        """Stop waiting for an impact (contact decided, or the swing resumed)."""
        self._armed_at = -1  # where the swing ended (ω through zero), absolute index
        self._impact_at = -1  # sample at which the impact became known, absolute index
        self._impact_t = math.nan

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
        jumps = ((t[1:] - t[:-1]) > self._gap_s).nonzero()[0] + 1 if len(t) > 1 else ()
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
        end = base + len(t)
        amp = np.maximum(amplitude, MIN_SWING_PEAK_RAD_S / self._swing_fraction)
        delta = self._hysteresis_fraction * amp
        level = self._swing_fraction * amp
        seeking_max = self._seeking_max  # search state at the start of the chunk
        extrema = self._extrema(w, delta, base)
        previous = np.concatenate(([self._prev], w[:-1]))
        self._prev = float(w[-1])
        # decisions in sample order: extrema confirmations first, then the ω crossings
        items: list[tuple[int, int, _Extremum | None]] = [
            (ext.confirmed_at - base, 0, ext) for ext in extrema
        ]
        half = 0.5 * level
        for mark, crossing in (
            (_HALF_LEVEL, (previous < half) & (w >= half)),
            (_LEVEL, (previous < level) & (w >= level)),
        ):
            items += [(int(i), mark, None) for i in crossing.nonzero()[0]]
        # ω through zero: down = the swing ended, up = it resumed (NaN counts as not forward)
        forward = (w > 0.0).view(np.int8)
        turns = forward[1:] - forward[:-1]
        items += [
            (int(i) + 1, _SWING_END if turns[i] < 0 else _SWING_RESUMED, None)
            for i in turns.nonzero()[0]
        ]
        if (self._prev_forward > 0) != bool(forward[0]):
            items.append((0, _SWING_RESUMED if forward[0] else _SWING_END, None))
        self._prev_forward = int(forward[-1])
        items.sort(key=lambda item: (item[0], item[1]))
        if self._armed_at >= 0 and self._impact_at < 0:
            self._scan_impact(end)  # the swing ended in an earlier chunk: look further
        for pos, mark, ext in items:
            self._fire_impact(base + pos, events)
            if ext is not None:
                seeking_max = not ext.is_max
                if ext.is_max:
                    self._on_max(ext, float(level[pos]))
                else:
                    self._on_min(ext, float(t[pos]), float(amp[pos]), events)
                    if w[pos] >= level[pos]:
                        self._emit_toe_off(float(t[pos]), events)
            elif mark == _SWING_END:
                if self._awaiting_ic and self._armed_at < 0:
                    self._armed_at = base + pos
                    self._scan_impact(end)
            elif mark == _SWING_RESUMED:
                self._disarm()
            else:
                self._on_rise(float(t[pos]), mark == _LEVEL, seeking_max, events)
        self._fire_impact(end - 1, events)

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
                    j = int(head.argmax() if self._seeking_max else head.argmin())
                else:
                    j = int((head == running[stop - 1]).nonzero()[0][0])
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
        if t_peak - self._last_ic_t < self._min_swing_s:
            return  # the rebound of the last contact: the foot has not left the ground yet
        if self._peaks:
            # an outlier among the accepted peaks (a spike, or a peak taken while the axis sign
            # was still wrong) must not lock out every later swing: cap the reference
            typical = sorted(self._peaks)[len(self._peaks) // 2]
            reference = min(typical, PEAK_CAP * swing_level / self._swing_fraction)
            if value < MIN_PEAK_FRACTION * reference:
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
        deep = value < min(0.0, self._swing_val - 0.5 * amplitude)
        if self._awaiting_ic:
            if t_min - self._swing_t > self._max_stride_s:
                self._awaiting_ic = False
                self._disarm()
            elif deep and t_min >= self._rise_t + self._min_swing_s:
                t_ic = self._impact_time(ext.index) if self._refine else math.nan
                if math.isnan(t_ic):
                    t_ic = self._refined(ext)[0]
                self._emit_contact(t_ic, now, ext.index, value, events)
                return
        elif self._contact_pending and deep:
            # the contact minimum of an IC already emitted from the impact
            self._contact_pending = False
            self._ic_idx = ext.index
            self._ic_rebound_needed = value + RUNNING_REBOUND * self._swing_val
            return
        if t_min > self._last_ic_t:
            self._last_min = ext
            if not math.isfinite(self._last_ic_t):
                self._to_done = False

    def _scan_impact(self, end: int) -> None:
        """Look for the foot-strike impact in |a| from the end of the swing up to ``end``.

        See the module docstring for the rule. Every quantity depends only on the samples from
        the swing end up to the decision, so the result does not depend on how the samples
        arrived; the search is repeated from the swing end on each new chunk until decided.
        """
        z = self._armed_at
        stop = min(end, z + self._impact_window_n)
        first = max(self._segment_start, self._n - self._capacity)
        if z < first:
            self._disarm()
            return
        lo = max(first, z - self._lookback_n)
        acc = self._history(self._a, lo, stop)
        a = np.sqrt(acc[:, 0] * acc[:, 0] + acc[:, 1] * acc[:, 1] + acc[:, 2] * acc[:, 2])
        # if |a| is already rising when the swing ends, start from the trough just before
        back = z - lo
        rising = a[1 : back + 1] > a[:back]
        climb = back - int(np.flatnonzero(~rising)[-1]) - 1 if not rising.all() else back
        trough = climb < back
        start = z - climb if trough else z
        found = self._impact_in(a, start - lo, trough, z - lo + self._impact_late_n)
        if found is None:
            if stop == z + self._impact_window_n or not np.isfinite(a).all():
                self._disarm()
            return
        decided, onset = found
        if math.isnan(onset):
            self._disarm()
            return
        self._impact_at = lo + decided
        whole = math.floor(onset)
        self._impact_t = (
            float(self._t[(lo + whole) % self._capacity]) + (onset - whole) / self.rate_hz
        )

    @staticmethod
    def _impact_in(a: FloatArray, s0: int, trough: bool, late: float) -> tuple[int, float] | None:
        """(decision index, onset as a fractional index) of the impact in |a|, or None.

        The rise is searched from ``a[s0]``; ``trough``: ``a[s0]`` is a local minimum of |a|,
        otherwise the rise must start from a later, lower sample.
        """
        if a.size - s0 < 3:
            return None
        floor = np.minimum.accumulate(a[s0:])
        rising = (a[s0:] - floor) >= IMPACT_TURN_M_S2
        if not trough:
            rising &= floor < a[s0]
        q = int(rising.argmax())
        limit = math.floor(late) + 1  # first sample after the latest impact time
        if (not rising[q] or s0 + q > limit) and a.size > limit:
            # no impact: its high frequencies may be filtered out (low rates), but the fall of
            # |a| still stops at contact; without such a bend there is no evidence of contact
            return limit, _sharpest_bend(a, max(1, s0), limit, IMPACT_MIN_RISE_M_S2)
        if not rising[q]:
            return None
        m = s0 + int(a[s0 : s0 + q + 1].argmin())
        slope = a[m + 1 :] - a[m:-1]  # slope[k] = a[m + k + 1] - a[m + k]
        k0 = s0 + q - m  # first slope that ends after the rise qualified
        if k0 >= slope.size:
            return None
        steepest = np.maximum.accumulate(slope)
        over = slope[k0:] < IMPACT_SLOPE_DROP * steepest[k0:]
        c = int(over.argmax())
        if not over[c]:
            return None
        k_end = k0 + c
        k = int(slope[:k_end].argmax())
        steep = m + k + 0.5 + _vertex(slope, k)
        if steep <= late:
            return m + k_end + 1, steep
        # a rise this long after the swing ended is not the impact (filtered out at low rates):
        # contact began where the fall of |a| stopped, its sharpest bend before this rise
        return m + k_end + 1, _sharpest_bend(a, max(1, s0), m + k + 1)

    def _fire_impact(self, upto: int, events: list[GaitEvent]) -> None:
        """Emit the IC of an impact known at or before absolute sample ``upto``."""
        if self._impact_at < 0 or self._impact_at > upto:
            return
        at, t_ic = self._impact_at, self._impact_t
        self._disarm()
        if not self._awaiting_ic or t_ic < self._rise_t + self._min_swing_s:
            return
        if t_ic - self._swing_t > self._max_stride_s:
            return
        lo = max(self._armed_at, self._segment_start, self._n - self._capacity, at - 64)
        w = self._history(self._w, lo, at + 1)
        self._emit_contact(t_ic, float(self._t[at % self._capacity]), at, float(w.min()), events)
        self._contact_pending = True

    def _emit_contact(
        self, t_ic: float, now: float, index: int, w_min: float, events: list[GaitEvent]
    ) -> None:
        self._awaiting_ic = False
        self._disarm()
        self._peaks = [*self._peaks[-4:], self._swing_val]
        if math.isfinite(self._last_ic_t):
            gap = t_ic - self._last_ic_t
            self._stride_s = gap if gap <= self._max_stride_s else math.nan
        self._last_ic_t = t_ic
        self._ic_idx = index
        self._ic_rebound_needed = w_min + RUNNING_REBOUND * self._swing_val
        self._last_min = None
        self._to_done = False
        self._contact_pending = False
        events.append(GaitEvent(t_ic, now, EventKind.INITIAL_CONTACT, self.side))

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
        steepest = int(slope.argmax())
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
        top = int(w.argmax())  # late-stance maximum: the shank stops rotating over the foot
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
        k = int(curvature.argmin())
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
