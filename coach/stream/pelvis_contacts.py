"""Initial contacts and their side from a pelvis (sacrum / lower-back) sensor alone.

The fallback contact detector for when no shank sensor is worn. Accelerometer only, or
accelerometer + gyroscope; any mount orientation; walking and running; 50-500 Hz.

Initial contact (IC)
    At initial contact the vertical specific force of the trunk starts its sharpest rise of the
    step: in running it leaves the ~0 g of flight and climbs towards the 2-3 g of mid-stance
    (Lee et al. 2010, sacrum: IC at the onset of the sharp rise), in walking the heel-strike
    loading gives a steep rise to the vertical acceleration peak just after contact
    (Zijlstra & Hof 2003; McCamley et al. 2012 locate IC on the same feature with an offline
    Gaussian CWT). Causally:

    1. the vertical dynamic acceleration (see :mod:`coach.stream.vertical`) is low-passed
       (2nd-order Butterworth, :data:`VERTICAL_CUTOFF_HZ`, lowered to 0.35 x rate at low
       rates) and differentiated (jerk, m/s³);
    2. every local maximum of the jerk is a candidate; it is known one sample later;
    3. a candidate is a step when its jerk exceeds :data:`SLOPE_FRACTION` of the envelope of
       all candidate jerks (a maximum decaying with :data:`ENVELOPE_TAU_S`, so amplitudes of
       walking and running and changes between them adapt within a few steps), when at least
       a refractory time has passed since the previous step (:data:`REFRACTORY_FRACTION` of
       the running step period, never less than 90 % of the shortest step allowed by
       ``max_cadence_spm``) and when it rises at least :data:`MIN_RISE` above the preceding
       minimum; a steeper peak within :data:`LOOKAHEAD_S` replaces it;
    4. the IC time is the onset of that rise: the tangent at the steepest point is extended
       back to the level of the preceding local minimum (never before that minimum, at most
       :data:`MAX_ONSET_S`), and the low-pass group delay is subtracted.

    ``t_detected`` is the sample after the steepest point of the rise: typically 30-60 ms
    after contact.

    Accuracy (``benchmarks/pelvis_contacts_real.py``): good in running (force-plate and
    force-treadmill references: median error 10-16 ms); weak in walking, where some people
    show an equally steep rise ~80 ms before heel strike that is taken instead.

Side
    After a right initial contact the left (swing) side of the pelvis drops: obliquity rises,
    i.e. the pelvis rolls to the right about the forward axis (Wixted et al. 2010; the
    contralateral drop of design.md section 3). With a gyroscope the evidence of a step is
    minus the mean roll rate about the forward axis over the first :data:`SIDE_WINDOW_S`
    after contact (positive = right). Without one, the mean left-ward acceleration over the
    same window is used: it points medially (away from the stance foot) in walking, where the
    lateral sway of the trunk dominates, and laterally in running, where the tilt of the
    dropping pelvis dominates (gravity leaks into the lateral axis); the gait is told by a
    flight phase before contact. The forward axis comes from
    :class:`~coach.stream.vertical.ForwardAxisEstimator`.

    Sides alternate, so a step's side is predicted from the previous steps before its own
    evidence exists: every step gets a parity in an alternating chain (a step interval of
    ~two step periods keeps the parity: a step was missed; a longer pause starts a new chain)
    and the decayed sum of parity-signed evidence says which parity is the right foot. Two
    strong contradictions in a row re-align the chain (a missed or extra step). The side is
    ``unknown`` until the chain holds enough consistent evidence.

Toe-offs are not reported: the pelvis signal gives them reliably only in running.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from coach.config import DetectionConfig
from coach.stream.vertical import (
    TEMPLATE_WINDOWS_S,
    ForwardAxisEstimator,
    GravityTracker,
    left_axis,
    split_vertical,
)
from coach.types import EventKind, FloatArray, GaitEvent, SampleBlock, Side

#: Low-pass cut-off of the vertical acceleration, Hz.
VERTICAL_CUTOFF_HZ = 20.0
#: A candidate must reach this fraction of the reference jerk (the candidate envelope).
SLOPE_FRACTION = 0.5
#: Jerk below which nothing is a step, m/s³ (sensor noise while standing is ~5 m/s³).
MIN_SLOPE = 20.0
#: Rise from the preceding minimum below which nothing is a step, m/s².
MIN_RISE = 0.5
#: No step is accepted within this fraction of the running step period after the last one.
REFRACTORY_FRACTION = 0.75
#: Decay time constant of the candidate envelope (the reference jerk), s.
ENVELOPE_TAU_S = 2.0
#: Nothing is reported before this long after the first sample (the reference settles), s.
WARM_UP_S = 1.0
#: Smoothing of the step period estimate (weight of a new interval).
PERIOD_SMOOTHING = 0.2
#: Window after initial contact whose mean roll rate / lateral acceleration gives the side, s.
SIDE_WINDOW_S = 0.10
#: Window before contact searched for a flight phase (running), s.
FLIGHT_WINDOW_S = 0.10
#: Vertical dynamic acceleration below which the body is airborne, in units of g (free fall
#: = -1 g).
FLIGHT_LEVEL_G = -0.5
#: Evidence scale floors (below them the signal is treated as absent): rad/s, m/s².
GYRO_EVIDENCE_FLOOR = 0.02
ACC_EVIDENCE_FLOOR = 0.1
#: Decay of the side chain per step and the score needed to name sides.
CHAIN_DECAY = 0.85
CHAIN_CONFIDENT = 2.0
CHAIN_MIN_STEPS = 3
#: Normalised evidence above which a contradiction of the chain counts.
CONTRADICTION_LEVEL = 0.5
#: After a step is found, a steeper jerk peak within this time replaces it, s (at least one
#: sample). It adds to the detection delay; longer values (0.04-0.12 s) did not fix walking on
#: the IPOL data, so it is kept minimal.
LOOKAHEAD_S = 0.0
#: Longest rise onset before the steepest point accepted as the contact onset, s.
MAX_ONSET_S = 0.06

_GAP_SAMPLES = 1.5
STANDARD_GRAVITY = 9.80665  # m/s²
# History columns: filtered vertical, horizontal (3), up (3), gyro (3), has gyro.
_V, _H, _UP, _GYR, _HAS_GYR = 0, slice(1, 4), slice(4, 7), slice(7, 10), 10
_COLUMNS = 11


@dataclass(frozen=True, slots=True)
class _HeldStep:
    """An accepted jerk peak waiting out the look-ahead for a steeper one."""

    index: int
    slope: float
    onset_s: float
    t_peak: float
    expiry: int


@dataclass(slots=True)
class _PendingStep:
    """A reported step whose side evidence window has not ended yet."""

    ic_index: int
    parity: int
    chain: int


class _SideChain:
    """Alternating left/right chain with decayed, parity-signed evidence."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.score = 0.0
        self.steps = 0
        self.contradictions = 0
        self.chain = 0
        self.parity = 0

    def restart(self) -> None:
        """New chain (after a pause or gap): parity and evidence start over."""
        self.score = 0.0
        self.steps = 0
        self.contradictions = 0
        self.chain += 1
        self.parity = 0

    @property
    def confident(self) -> bool:
        return self.steps >= CHAIN_MIN_STEPS and abs(self.score) >= CHAIN_CONFIDENT

    def side_of(self, parity: int) -> Side:
        if not self.confident:
            return Side.UNKNOWN
        right_is_even = self.score > 0.0
        return Side.RIGHT if (parity == 0) == right_is_even else Side.LEFT

    def add(self, parity: int, evidence: float) -> None:
        """Add one step's normalised evidence (> 0 = right foot)."""
        signed = evidence if parity == 0 else -evidence
        if self.confident and signed * self.score < 0.0 and abs(evidence) > CONTRADICTION_LEVEL:
            self.contradictions += 1
            if self.contradictions >= 2:
                self.score = -self.score
                self.contradictions = 0
        elif signed * self.score > 0.0:
            self.contradictions = 0
        self.score = CHAIN_DECAY * self.score + signed
        self.steps += 1


class PelvisContactDetector:
    """Streaming initial-contact detector for one pelvis sensor (see the module docstring).

    Args:
        rate_hz: sample rate of the (uniformly sampled) input blocks, Hz.
        config: detection limits (cadence range).

    """

    def __init__(self, rate_hz: float, config: DetectionConfig) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        self._rate = float(rate_hz)
        self._min_step_s = 60.0 / config.max_cadence_spm
        self._max_step_s = 60.0 / config.min_cadence_spm
        cutoff = min(VERTICAL_CUTOFF_HZ, 0.35 * self._rate)
        self._sos = signal.butter(2, cutoff, fs=self._rate, output="sos")
        self._zi_unit = signal.sosfilt_zi(self._sos)
        _, delay = signal.group_delay(signal.sos2tf(self._sos), w=[0.5], fs=self._rate)
        self._delay_s = float(delay[0]) / self._rate + 0.5 / self._rate
        edges = [round(a * self._rate) for a, _ in TEMPLATE_WINDOWS_S]
        edges.append(round(TEMPLATE_WINDOWS_S[-1][1] * self._rate))
        for i in range(1, len(edges)):  # contiguous windows of at least one sample
            edges[i] = max(edges[i], edges[i - 1] + 1)
        self._template_idx = list(itertools.pairwise(edges))
        starts = np.array([a for a, _ in self._template_idx])
        self._template_offsets = starts - starts[0]
        self._template_lengths = np.array([b - a for a, b in self._template_idx], dtype=float)
        self._side_len = max(1, round(SIDE_WINDOW_S * self._rate))
        self._flight_len = max(1, round(FLIGHT_WINDOW_S * self._rate))
        self._window_end = max(self._side_len, self._template_idx[-1][1])
        self._window_start = min(-self._flight_len, self._template_idx[0][0])
        self._lookahead = max(1, round(LOOKAHEAD_S * self._rate))
        self._history_len = (
            round((MAX_ONSET_S + self._delay_s) * self._rate)
            + self._lookahead
            + self._window_end
            - self._window_start
            + 4
        )
        self._gravity = GravityTracker(self._rate)
        self._forward = ForwardAxisEstimator()
        self._chain = _SideChain()
        self.reset()

    def reset(self) -> None:
        """Forget everything, as if newly constructed."""
        self._gravity.reset()
        self._forward.reset()
        self._chain.reset()
        self._index = 0  # global index of the next sample
        self._last_t: float | None = None
        self._start_t: float | None = None
        self._flight = 0.0
        self._evidence_scale = 0.0
        self._period: float | None = None
        self._history = np.zeros((0, _COLUMNS))
        self._history_start = 0
        self._pending: list[_PendingStep] = []
        self._restart_segment()
        self._envelope = 0.0
        self._envelope_t = 0.0

    def _restart_segment(self) -> None:
        """Restart the fast filters and the peak search (start or data gap)."""
        self._zi: FloatArray | None = None
        self._tail_v = np.zeros(0)
        self._tail_d = np.zeros(0)
        self._last_min: tuple[int, float] | None = None
        self._last_step_t: float | None = None
        self._held: _HeldStep | None = None
        self._pending.clear()
        self._chain.restart()

    def update(self, block: SampleBlock) -> list[GaitEvent]:
        """Process consecutive samples; return the initial contacts decided in them."""
        n = len(block)
        if n == 0:
            return []
        t = np.asarray(block.t, dtype=np.float64)
        acc = _finite_or_zero(np.asarray(block.acc, dtype=np.float64))
        gyr = None if block.gyr is None else _finite_or_zero(np.asarray(block.gyr, float))
        jumps = np.flatnonzero(np.diff(t) > _GAP_SAMPLES / self._rate) + 1
        events: list[GaitEvent] = []
        for start, stop in zip(
            np.concatenate(([0], jumps)), np.concatenate((jumps, [n])), strict=True
        ):
            if self._last_t is not None and t[start] - self._last_t > _GAP_SAMPLES / self._rate:
                self._restart_segment()
            events.extend(
                self._segment(
                    t[start:stop], acc[start:stop], None if gyr is None else gyr[start:stop]
                )
            )
            self._last_t = float(t[stop - 1])
        return events

    # --- per segment (no gap inside) -------------------------------------------------------

    def _segment(self, t: FloatArray, acc: FloatArray, gyr: FloatArray | None) -> list[GaitEvent]:
        n = t.shape[0]
        if self._start_t is None:
            self._start_t = float(t[0])
        up, g = self._gravity.update(acc)
        vertical, horizontal = split_vertical(acc, up, g)
        if self._zi is None:
            self._zi = self._zi_unit * vertical[0]
        filtered, self._zi = signal.sosfilt(self._sos, vertical, zi=self._zi)
        rows = np.zeros((n, _COLUMNS))
        rows[:, _V] = filtered
        rows[:, _H] = horizontal
        rows[:, _UP] = up
        if gyr is not None:
            rows[:, _GYR] = gyr
            rows[:, _HAS_GYR] = 1.0
        self._history = np.concatenate((self._history, rows))

        tail = self._tail_v.size
        ext_v = np.concatenate((self._tail_v, filtered))
        ext_d = np.concatenate((self._tail_d, np.zeros(n)))
        self._jerk(ext_v, ext_d, tail)
        base = self._index - tail  # global index of ext position 0
        events: list[GaitEvent] = []
        peaks, minima = self._extrema(ext_d, 1)
        for m in peaks.tolist():
            decision = base + m + 1
            self._resolve_pending(decision)
            before = minima[minima < m]
            if before.size:
                last_min: tuple[int, float] | None = (
                    base + int(before[-1]),
                    float(ext_v[before[-1]]),
                )
            else:
                last_min = self._last_min
            t_decision = float(t[decision - self._index])
            event = self._candidate(
                base + m, float(ext_v[m]), float(ext_d[m]), last_min, t_decision
            )
            if event is not None:
                events.append(event)
        if minima.size:
            self._last_min = (base + int(minima[-1]), float(ext_v[minima[-1]]))
        self._index += n
        released = self._release(self._index)
        if released is not None:
            events.append(released)
        self._resolve_pending(self._index)
        self._tail_v = ext_v[-2:].copy()
        self._tail_d = ext_d[-2:].copy()
        excess = self._history.shape[0] - self._history_len
        if excess > 0:
            self._history = self._history[excess:].copy()
            self._history_start += excess
        return events

    def _jerk(self, ext_v: FloatArray, ext_d: FloatArray, start: int) -> None:
        """Fill the derivative of the low-passed vertical acceleration (m/s³) from ``start``."""
        if start == 0:
            ext_d[:1] = 0.0
            start = 1
        ext_d[start:] = (ext_v[start:] - ext_v[start - 1 : -1]) * self._rate

    @staticmethod
    def _extrema(ext_d: FloatArray, first: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Jerk peaks (candidates) and minima of the contact signal at ext positions >= first.

        A position p needs ext_d[p - 1] and ext_d[p + 1], so 1 <= p <= len - 2.
        """
        first = max(first, 1)
        if ext_d.size < first + 2:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        centre = ext_d[first:-1]
        left = ext_d[first - 1 : -2]
        right = ext_d[first + 1 :]
        peaks = np.flatnonzero((centre > left) & (centre >= right) & (centre > MIN_SLOPE)) + first
        minima = np.flatnonzero((centre <= 0.0) & (right > 0.0)) + first
        return peaks, minima

    def _candidate(
        self,
        index: int,
        value: float,
        slope: float,
        last_min: tuple[int, float] | None,
        t_decision: float,
    ) -> GaitEvent | None:
        """Judge one jerk peak; return the held step that this peak's arrival released."""
        t_peak = t_decision - 1.0 / self._rate
        released = None
        if self._held is not None and index >= self._held.expiry:
            released = self._release()
        reference = self._reference(t_peak)
        self._envelope = max(
            slope, self._envelope * math.exp(-(t_peak - self._envelope_t) / ENVELOPE_TAU_S)
        )
        self._envelope_t = t_peak
        assert self._start_t is not None
        if t_peak - self._start_t < WARM_UP_S:
            return released
        if self._held is not None:
            if slope > self._held.slope:
                self._held = self._hold(index, value, slope, last_min, t_peak)
            return released
        if self._last_step_t is not None and t_peak - self._last_step_t < self._refractory():
            return released
        if slope < SLOPE_FRACTION * reference or last_min is None:
            return released
        if value - last_min[1] < MIN_RISE:
            return released
        self._held = self._hold(index, value, slope, last_min, t_peak)
        return released

    def _hold(
        self,
        index: int,
        value: float,
        slope: float,
        last_min: tuple[int, float] | None,
        t_peak: float,
    ) -> _HeldStep:
        rise = 0.0 if last_min is None else value - last_min[1]
        since_min = MAX_ONSET_S if last_min is None else (index - last_min[0]) / self._rate
        onset_s = min(max(rise, 0.0) / slope, since_min, MAX_ONSET_S)
        return _HeldStep(index, slope, onset_s, t_peak, index + self._lookahead)

    def _release(self, index_limit: int | None = None) -> GaitEvent | None:
        """Report the held step (its look-ahead has expired)."""
        held = self._held
        if held is None or (index_limit is not None and held.expiry >= index_limit):
            return None
        self._held = None
        t_ic = held.t_peak - held.onset_s - self._delay_s
        ic_index = held.index - round((held.onset_s + self._delay_s) * self._rate)
        parity = self._step_parity(held.t_peak)
        self._last_step_t = held.t_peak
        self._pending.append(_PendingStep(ic_index, parity, self._chain.chain))
        t_detected = held.t_peak + self._lookahead / self._rate
        return GaitEvent(t_ic, t_detected, EventKind.INITIAL_CONTACT, self._chain.side_of(parity))

    def _reference(self, t: float) -> float:
        """Envelope of all candidate jerks (decaying max), m/s³, at time ``t``."""
        return self._envelope * math.exp(-(t - self._envelope_t) / ENVELOPE_TAU_S)

    def _refractory(self) -> float:
        floor = 0.9 * self._min_step_s
        if self._period is None:
            return floor
        return max(floor, REFRACTORY_FRACTION * self._period)

    def _step_parity(self, t: float) -> int:
        """Parity of a new step in the side chain, restarting the chain after a pause."""
        if self._last_step_t is None:
            self._chain.restart()
            return self._chain.parity
        interval = t - self._last_step_t
        if self._min_step_s <= interval <= self._max_step_s:
            if self._period is None:
                self._period = interval
            else:
                self._period += PERIOD_SMOOTHING * (interval - self._period)
        period = self._period if self._period is not None else interval
        if interval <= 1.5 * period:
            self._chain.parity ^= 1
        elif interval > 2.5 * period or interval > 2.0 * self._max_step_s:
            self._chain.restart()
        return self._chain.parity

    # --- side evidence ---------------------------------------------------------------------

    def _resolve_pending(self, available: int) -> None:
        """Use the side windows of the pending steps that end before sample ``available``."""
        while self._pending and self._pending[0].ic_index + self._window_end <= available:
            step = self._pending.pop(0)
            start = step.ic_index + self._window_start - self._history_start
            if start < 0 or step.chain != self._chain.chain:
                continue
            self._step_evidence(step, start - self._window_start)

    def _step_evidence(self, step: _PendingStep, ic_row: int) -> None:
        hist = self._history
        first, last = self._template_idx[0][0], self._template_idx[-1][1]
        sums = np.add.reduceat(hist[ic_row + first : ic_row + last, _H], self._template_offsets)
        template = sums / self._template_lengths[:, None]
        flight = float(hist[ic_row - self._flight_len : ic_row + 1, _V].min())
        is_flight = 1.0 if flight < FLIGHT_LEVEL_G * STANDARD_GRAVITY else 0.0
        self._flight += 0.2 * (is_flight - self._flight)
        self._forward.add_step(template, running=self._flight > 0.5)
        up = hist[ic_row, _UP]
        forward = self._forward.forward(up)
        if forward is None:
            return
        window = hist[ic_row : ic_row + self._side_len]
        if window[:, _HAS_GYR].all():
            evidence = -float(window[:, _GYR].mean(axis=0) @ forward)
            floor = GYRO_EVIDENCE_FLOOR
        else:
            lateral = float(window[:, _H].mean(axis=0) @ left_axis(up, forward))
            evidence = -lateral if self._flight > 0.5 else lateral
            floor = ACC_EVIDENCE_FLOOR
        if self._evidence_scale == 0.0:
            self._evidence_scale = abs(evidence)
        else:
            self._evidence_scale += 0.1 * (abs(evidence) - self._evidence_scale)
        normalised = float(np.clip(evidence / max(self._evidence_scale, floor), -2.0, 2.0))
        self._chain.add(step.parity, normalised)


def _finite_or_zero(values: FloatArray) -> FloatArray:
    """Replace non-finite values by 0 (bad data must never poison the filters)."""
    if np.isfinite(values).all():
        return values
    return np.where(np.isfinite(values), values, 0.0)
