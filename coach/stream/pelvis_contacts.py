"""Initial contacts and their side from a pelvis (sacrum / lower-back) sensor alone.

The fallback contact detector for when no shank sensor is worn. Accelerometer only, or
accelerometer + gyroscope; any mount orientation; walking and running; 50-500 Hz.

Signals
    The specific force is low-passed (2nd-order Butterworth, :data:`CUTOFF_HZ`, lowered to
    0.35 x rate at low rates) and split into its vertical dynamic part and its horizontal part
    with the tracked gravity direction (:mod:`coach.stream.vertical`). Once the forward axis is
    known (:class:`~coach.stream.vertical.ForwardAxisEstimator`, refreshed every
    :data:`AXIS_UPDATE_S`), the forward acceleration is the horizontal part along it.

Initial contact (IC): one rise detector, two signals
    Running (a flight phase precedes contact): at initial contact the vertical specific force
    leaves the ~0 g of flight and starts its sharpest rise towards the 2-3 g of mid-stance
    (Lee et al. 2010, sacrum: IC at the onset of the sharp rise). Walking: the forward
    acceleration of the lower trunk peaks just before heel strike and then drops sharply
    (Zijlstra & Hof 2003: IC at the forward acceleration peak before its sign change;
    McCamley et al. 2012 find IC on the same step with an offline wavelet). The vertical rise in
    walking is ambiguous (some people show an equally steep rise ~80 ms before heel strike), the
    forward drop is not. The gait is told from the signal: a step is a running step when the
    vertical acceleration dropped below :data:`FLIGHT_LEVEL_G` just before contact, and an
    average of recent steps decides (never a per-dataset switch). Until the forward axis is
    known, walking steps are taken from the vertical signal too.

    The same causal rise detector runs on the vertical acceleration and on minus the forward
    acceleration:

    1. the signal is differentiated (m/s³); every local maximum of the derivative is a
       candidate, known one sample later;
    2. a candidate is a step when its slope exceeds :data:`SLOPE_FRACTION` of the envelope of
       that signal's candidate slopes (a maximum decaying with :data:`ENVELOPE_TAU_S`, so walking
       and running amplitudes adapt within a few steps; on the forward signal
       :data:`WEAK_FORWARD_FRACTION` suffices once a step is due, i.e. :data:`DUE_FRACTION` of
       the step period after the last step), when at least a refractory time has
       passed since the previous step (:data:`REFRACTORY_FRACTION` of the step period, never
       less than 90 % of the shortest step allowed by ``max_cadence_spm``) and when it rises at
       least :data:`MIN_RISE` above the preceding local minimum;
    3. the IC time is the onset of that rise: the tangent at the steepest point is extended back
       to the level of the preceding local minimum (never before that minimum, at most
       :data:`MAX_ONSET_S`), and the low-pass group delay is subtracted. For the forward signal
       this onset is the forward acceleration peak before the drop.

    ``t_detected`` is the sample after the steepest point: typically 20-60 ms after contact.

Side
    After a right initial contact the left (swing) side of the pelvis drops: the pelvis rolls
    to the right about the forward axis (Wixted et al. 2010; the contralateral drop of
    design.md section 3). With a gyroscope the evidence of a step is minus the mean roll rate
    about the forward axis over a window after contact (running: the first
    :data:`RUNNING_SIDE_WINDOW_S`; walking: :data:`WALKING_GYRO_WINDOW_S`, where the roll
    follows the loading response). Without one, the mean left-ward acceleration is used: it
    points medially (away from the stance foot) in walking, where the lateral sway of the trunk
    dominates (:data:`WALKING_ACC_WINDOW_S`), and laterally in running, where the tilt of the
    dropping pelvis dominates (gravity leaks into the lateral axis).

    Sides alternate, so a step's side is predicted from the previous steps before its own
    evidence exists: every step gets a parity in an alternating chain (a step interval of
    ~two step periods keeps the parity: a step was missed; a longer pause starts a new chain)
    and the decayed sum of parity-signed evidence says which parity is the right foot. Two
    strong contradictions in a row re-align the chain (a missed or extra step). The side is
    ``unknown`` until the chain holds enough consistent evidence.

Toe-offs are not reported: the pelvis signal gives them reliably only in running.

Accuracy and speed: ``benchmarks/pelvis_contacts_real.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from coach.config import DetectionConfig
from coach.stream.vertical import (
    ForwardAxisEstimator,
    GravityTracker,
    left_axis,
    split_vertical,
    template_bins,
)
from coach.types import EventKind, FloatArray, GaitEvent, SampleBlock, Side

#: Low-pass cut-off of the acceleration, Hz.
CUTOFF_HZ = 20.0
#: A candidate must reach this fraction of the reference slope (the candidate envelope).
SLOPE_FRACTION = 0.5
#: A forward candidate reaching only this fraction is a step when one is due (at least
#: :data:`DUE_FRACTION` of the step period after the last): the heel-strike drop is weaker at the
#: last step before stopping and in turns, while the weak drops between steps come early.
WEAK_FORWARD_FRACTION = 0.35
DUE_FRACTION = 0.85
#: Slope below which nothing is a step, m/s³, for the vertical and the forward signal (sensor
#: noise while standing is ~5 m/s³; the walking forward drop is gentler than a running impact).
MIN_SLOPE = 20.0
MIN_FORWARD_SLOPE = 10.0
#: Rise from the preceding minimum below which nothing is a step, m/s².
MIN_RISE = 0.5
#: No step is accepted within this fraction of the step period after the last one.
REFRACTORY_FRACTION = 0.75
#: Decay time constant of the candidate envelope (the reference slope), s.
ENVELOPE_TAU_S = 2.0
#: Nothing is reported before this long after the first sample (the reference settles), s.
WARM_UP_S = 1.0
#: Smoothing of the step period estimate (weight of a new interval).
PERIOD_SMOOTHING = 0.2
#: Side evidence windows, s relative to initial contact (start, stop).
RUNNING_SIDE_WINDOW_S = (0.0, 0.10)
WALKING_GYRO_WINDOW_S = (0.02, 0.14)
WALKING_ACC_WINDOW_S = (0.02, 0.08)
#: Window before contact searched for a flight phase (running), s.
FLIGHT_WINDOW_S = 0.10
#: Vertical dynamic acceleration below which the body is airborne, in units of g (free fall
#: = -1 g).
FLIGHT_LEVEL_G = -0.5
#: Weight of a new step in the running share (steps with a flight phase); above 0.5 = running.
GAIT_SMOOTHING = 0.2
#: The forward axis is recomputed every this many seconds (at fixed sample counts), s.
AXIS_UPDATE_S = 1.0
#: The forward signal is scanned (from the next axis update on) while the running share is at
#: most this, so its envelope is ready when walking is decided (running share <= 0.5).
SCAN_FORWARD_BELOW = 0.8
#: Evidence scale floors (below them the signal is treated as absent): rad/s, m/s².
GYRO_EVIDENCE_FLOOR = 0.02
ACC_EVIDENCE_FLOOR = 0.1
#: Decay of the side chain per step and the score needed to name sides.
CHAIN_DECAY = 0.85
CHAIN_CONFIDENT = 2.0
CHAIN_MIN_STEPS = 3
#: Normalised evidence above which a contradiction of the chain counts.
CONTRADICTION_LEVEL = 0.5
#: Longest rise onset before the steepest point accepted as the contact onset, s.
MAX_ONSET_S = 0.06

_GAP_SAMPLES = 1.5
STANDARD_GRAVITY = 9.80665  # m/s²
# History columns: filtered vertical, filtered horizontal (3), up (3), gyro (3), has gyro.
_V, _H, _UP, _GYR, _HAS_GYR = 0, slice(1, 4), slice(4, 7), slice(7, 10), 10
_COLUMNS = 11
# The two rise signals.
_VERTICAL, _FORWARD = 0, 1


@dataclass(frozen=True, slots=True)
class _PendingStep:
    """A reported step whose evidence windows have not ended yet."""

    ic_index: int
    parity: int
    chain: int
    walking: bool


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A local maximum of a signal's slope."""

    decision: int  # global index of the sample at which it is known
    stream: int
    index: int  # global index of the steepest sample
    value: float  # signal there, m/s²
    slope: float  # m/s³
    last_min: tuple[int, float] | None  # preceding local minimum (global index, value)


class _RiseStream:
    """Slope peaks and the preceding minima of one signal, across blocks."""

    def __init__(self, stream: int, rate_hz: float, min_slope: float) -> None:
        self._stream = stream
        self._rate = rate_hz
        self._min_slope = min_slope
        self.reset()

    def reset(self) -> None:
        """Forget the signal (start, data gap)."""
        self._tail_v = np.zeros(0)
        self._tail_d = np.zeros(0)
        self.last_min: tuple[int, float] | None = None

    def scan(self, values: FloatArray, first_index: int, floor: float) -> list[_Candidate]:
        """Candidates among ``values`` (global indices from ``first_index``), in time order.

        Slope peaks at or below ``floor`` (m/s³) are left out.
        """
        tail = self._tail_v.size
        ext_v = np.concatenate((self._tail_v, values))
        ext_d = np.empty_like(ext_v)
        ext_d[:tail] = self._tail_d
        start = tail
        if start == 0:
            ext_d[:1] = 0.0
            start = 1
        ext_d[start:] = (ext_v[start:] - ext_v[start - 1 : -1]) * self._rate
        base = first_index - tail
        self._tail_v = ext_v[-2:]
        self._tail_d = ext_d[-2:]
        if ext_d.size < 3:
            return []
        centre, left, right = ext_d[1:-1], ext_d[:-2], ext_d[2:]
        peaks = np.flatnonzero(
            (centre > left) & (centre >= right) & (centre > max(self._min_slope, floor))
        )
        minima = np.flatnonzero((centre <= 0.0) & (right > 0.0))
        candidates = []
        if peaks.size:
            where = np.searchsorted(minima, peaks)  # minima before each peak
            for peak, k in zip((peaks + 1).tolist(), where.tolist(), strict=True):
                if k > 0:
                    m = int(minima[k - 1]) + 1
                    last_min: tuple[int, float] | None = (base + m, float(ext_v[m]))
                else:
                    last_min = self.last_min
                candidates.append(
                    _Candidate(
                        base + peak + 1,
                        self._stream,
                        base + peak,
                        float(ext_v[peak]),
                        float(ext_d[peak]),
                        last_min,
                    )
                )
        if minima.size:
            m = int(minima[-1]) + 1
            self.last_min = (base + m, float(ext_v[m]))
        return candidates


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
        cutoff = min(CUTOFF_HZ, 0.35 * self._rate)
        self._b, self._a = signal.butter(2, cutoff, fs=self._rate)
        self._zi_unit = signal.lfilter_zi(self._b, self._a)[:, None]
        _, delay = signal.group_delay((self._b, self._a), w=[0.5], fs=self._rate)
        self._delay_s = float(delay[0]) / self._rate + 0.5 / self._rate
        self._template_first, self._template_offsets, lengths = template_bins(self._rate)
        self._template_lengths = lengths[:, None]
        self._template_span = int(self._template_offsets[-1] + lengths[-1])
        windows = (RUNNING_SIDE_WINDOW_S, WALKING_GYRO_WINDOW_S, WALKING_ACC_WINDOW_S)
        self._windows = [self._samples(w) for w in windows]
        self._flight_len = max(1, round(FLIGHT_WINDOW_S * self._rate))
        self._window_end = max(
            *(stop for _, stop in self._windows), self._template_first + self._template_span
        )
        self._window_start = min(-self._flight_len, self._template_first)
        self._history_len = (
            round((MAX_ONSET_S + self._delay_s) * self._rate)
            + self._window_end
            - self._window_start
            + 4
        )
        self._axis_every = max(1, round(AXIS_UPDATE_S * self._rate))
        self._gravity = GravityTracker(self._rate)
        self._forward = ForwardAxisEstimator()
        self._chain = _SideChain()
        self._streams = (
            _RiseStream(_VERTICAL, self._rate, MIN_SLOPE),
            _RiseStream(_FORWARD, self._rate, MIN_FORWARD_SLOPE),
        )
        self.reset()

    def _samples(self, window: tuple[float, float]) -> tuple[int, int]:
        start = round(window[0] * self._rate)
        return start, max(start + 1, round(window[1] * self._rate))

    def reset(self) -> None:
        """Forget everything, as if newly constructed."""
        self._gravity.reset()
        self._forward.reset()
        self._chain.reset()
        self._axis: FloatArray | None = None
        self._scan_forward = False
        self._left = np.zeros(3)
        self._index = 0  # global index of the next sample
        self._last_t: float | None = None
        self._start_t: float | None = None
        self._running = 1.0  # share of recent steps with a flight phase
        self._evidence_scale = 0.0
        self._period: float | None = None
        self._history = np.zeros((0, _COLUMNS))
        self._history_start = 0
        self._pending: list[_PendingStep] = []
        self._envelopes = [0.0, 0.0]
        self._envelope_t = [0.0, 0.0]
        self._restart_segment()

    def _restart_segment(self) -> None:
        """Restart the fast filters and the peak search (start or data gap)."""
        self._zi: FloatArray | None = None
        for stream in self._streams:
            stream.reset()
        self._last_step_t: float | None = None
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
        limit = _GAP_SAMPLES / self._rate
        if self._last_t is not None and t[0] - self._last_t > limit:
            self._restart_segment()
        jumps = np.flatnonzero(np.diff(t) > limit) + 1 if n > 1 else np.zeros(0, np.intp)
        if jumps.size == 0:
            events = self._segment(t, acc, gyr)
        else:
            events = []
            edges = [0, *jumps.tolist(), n]
            for k in range(len(edges) - 1):
                start, stop = edges[k], edges[k + 1]
                if k > 0:
                    self._restart_segment()
                events += self._segment(
                    t[start:stop], acc[start:stop], None if gyr is None else gyr[start:stop]
                )
        self._last_t = float(t[-1])
        return events

    # --- per segment (no gap inside) -------------------------------------------------------

    def _segment(self, t: FloatArray, acc: FloatArray, gyr: FloatArray | None) -> list[GaitEvent]:
        n = t.shape[0]
        if self._start_t is None:
            self._start_t = float(t[0])
        up, g = self._gravity.update(acc)
        if self._zi is None:
            self._zi = self._zi_unit * acc[0]
        filtered, self._zi = signal.lfilter(self._b, self._a, acc, axis=0, zi=self._zi)
        vertical, horizontal = split_vertical(filtered, up, g)
        rows = np.zeros((n, _COLUMNS))
        rows[:, _V] = vertical
        rows[:, _H] = horizontal
        rows[:, _UP] = up
        if gyr is not None:
            rows[:, _GYR] = gyr
            rows[:, _HAS_GYR] = 1.0
        self._history = np.concatenate((self._history, rows))

        events: list[GaitEvent] = []
        start = 0
        while start < n:
            first = self._index + start
            if first > 0 and first % self._axis_every == 0:
                self._update_axis(first)
            stop = min(n, start + self._axis_every - first % self._axis_every)
            events += self._piece(
                first, t[start:stop], vertical[start:stop], horizontal[start:stop]
            )
            start = stop
        self._index += n
        self._resolve_pending(self._index)
        excess = self._history.shape[0] - self._history_len
        if excess > 0:
            self._history = self._history[excess:].copy()
            self._history_start += excess
        return events

    def _update_axis(self, index: int) -> None:
        """Refresh the forward axis at global sample ``index`` (a multiple of the period)."""
        self._resolve_pending(index)
        up = self._history[index - 1 - self._history_start, _UP]
        axis = self._forward.update_axis(up, running=self._running > 0.5)
        # The forward signal is followed only where walking steps are near (it costs time).
        self._scan_forward = axis is not None and self._running <= SCAN_FORWARD_BELOW
        if axis is not None:
            self._axis = axis
            self._left = left_axis(up, axis)

    def _piece(
        self, first: int, t: FloatArray, vertical: FloatArray, horizontal: FloatArray
    ) -> list[GaitEvent]:
        """Judge the candidates of both signals in time order over samples with one axis.

        ``first`` is the global index of the first sample.
        """
        # A candidate below SLOPE_FRACTION x the lowest envelope over these samples can neither
        # be a step nor raise the envelope: leave it out early.
        t_end = float(t[-1])
        fractions = (SLOPE_FRACTION, WEAK_FORWARD_FRACTION)
        floors = [fractions[k] * self._reference(k, t_end) for k in (_VERTICAL, _FORWARD)]
        candidates = self._streams[_VERTICAL].scan(vertical, first, floors[_VERTICAL])
        if not self._scan_forward or self._axis is None:
            self._streams[_FORWARD].reset()
        else:
            a = self._axis
            backward = -(
                horizontal[:, 0] * a[0] + horizontal[:, 1] * a[1] + horizontal[:, 2] * a[2]
            )
            more = self._streams[_FORWARD].scan(backward, first, floors[_FORWARD])
            if more:
                candidates = sorted(candidates + more, key=lambda c: (c.decision, c.stream))
        events: list[GaitEvent] = []
        for candidate in candidates:
            self._resolve_pending(candidate.decision)
            event = self._judge(candidate, float(t[candidate.decision - first]))
            if event is not None:
                events.append(event)
        return events

    def _walking(self) -> bool:
        """Walking steps are timed on the forward signal (once its axis is known)."""
        return self._axis is not None and self._running <= 0.5

    def _judge(self, candidate: _Candidate, t_decision: float) -> GaitEvent | None:
        """Judge one slope peak; return the step it starts, if any."""
        t_peak = t_decision - 1.0 / self._rate
        stream = candidate.stream
        reference = self._reference(stream, t_peak)
        if candidate.slope > reference:
            self._envelopes[stream] = candidate.slope
            self._envelope_t[stream] = t_peak
        assert self._start_t is not None
        if t_peak - self._start_t < WARM_UP_S or (stream == _FORWARD) != self._walking():
            return None
        if self._last_step_t is not None and t_peak - self._last_step_t < self._refractory():
            return None
        last_min = candidate.last_min
        if last_min is None or candidate.slope < self._needed_fraction(stream, t_peak) * reference:
            return None
        rise = candidate.value - last_min[1]
        if rise < MIN_RISE:
            return None
        since_min = (candidate.index - last_min[0]) / self._rate
        onset_s = min(rise / candidate.slope, since_min, MAX_ONSET_S)
        t_ic = t_peak - onset_s - self._delay_s
        ic_index = candidate.index - round((onset_s + self._delay_s) * self._rate)
        parity = self._step_parity(t_peak)
        self._last_step_t = t_peak
        self._pending.append(_PendingStep(ic_index, parity, self._chain.chain, stream == _FORWARD))
        side = self._chain.side_of(parity)
        return GaitEvent(t_ic, t_decision, EventKind.INITIAL_CONTACT, side)

    def _needed_fraction(self, stream: int, t: float) -> float:
        """Share of the envelope a candidate of ``stream`` at time ``t`` must reach."""
        if stream != _FORWARD or self._period is None or self._last_step_t is None:
            return SLOPE_FRACTION
        if t - self._last_step_t < DUE_FRACTION * self._period:
            return SLOPE_FRACTION
        return WEAK_FORWARD_FRACTION

    def _reference(self, stream: int, t: float) -> float:
        """Envelope of a signal's candidate slopes (decaying max), m/s³, at time ``t``."""
        return self._envelopes[stream] * math.exp(-(t - self._envelope_t[stream]) / ENVELOPE_TAU_S)

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

    # --- step-locked evidence: gait, forward axis, side ------------------------------------

    def _resolve_pending(self, available: int) -> None:
        """Use the windows of the pending steps that end before sample ``available``."""
        while self._pending and self._pending[0].ic_index + self._window_end <= available:
            step = self._pending.pop(0)
            ic_row = step.ic_index - self._history_start
            if ic_row + self._window_start < 0 or step.chain != self._chain.chain:
                continue
            self._step_evidence(step, ic_row)

    def _step_evidence(self, step: _PendingStep, ic_row: int) -> None:
        hist = self._history
        first = ic_row + self._template_first
        sums = np.add.reduceat(
            hist[first : first + self._template_span, _H], self._template_offsets
        )
        self._forward.add_step(sums / self._template_lengths)
        flight = hist[ic_row - self._flight_len : ic_row + 1, _V].min()
        is_flight = 1.0 if flight < FLIGHT_LEVEL_G * STANDARD_GRAVITY else 0.0
        self._running += GAIT_SMOOTHING * (is_flight - self._running)
        axis = self._axis
        if axis is None:
            return
        running = not step.walking and self._running > 0.5
        has_gyro = hist[ic_row, _HAS_GYR] > 0.0
        if has_gyro:
            start, stop = self._windows[0 if running else 1]
            rate = hist[ic_row + start : ic_row + stop, _GYR].sum(axis=0) / (stop - start)
            evidence = -float(rate[0] * axis[0] + rate[1] * axis[1] + rate[2] * axis[2])
            floor = GYRO_EVIDENCE_FLOOR
        else:
            start, stop = self._windows[0 if running else 2]
            mean = hist[ic_row + start : ic_row + stop, _H].sum(axis=0) / (stop - start)
            left = self._left
            lateral = float(mean[0] * left[0] + mean[1] * left[1] + mean[2] * left[2])
            evidence = -lateral if running else lateral
            floor = ACC_EVIDENCE_FLOOR
        if self._evidence_scale == 0.0:
            self._evidence_scale = abs(evidence)
        else:
            self._evidence_scale += 0.1 * (abs(evidence) - self._evidence_scale)
        normalised = evidence / max(self._evidence_scale, floor)
        self._chain.add(step.parity, min(2.0, max(-2.0, normalised)))


def _finite_or_zero(values: FloatArray) -> FloatArray:
    """Replace non-finite values by 0 (bad data must never poison the filters)."""
    if np.isfinite(values).all():
        return values
    return np.where(np.isfinite(values), values, 0.0)
