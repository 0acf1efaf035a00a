"""Foot contacts (initial contact, toe-off) from one shank or foot gyroscope, in real time.

Method (Aminian et al. 2002; Salarian et al. 2004; real-time form after Lee & Park 2011 and
Maqbool et al. 2017): on the sagittal angular velocity ω (forward swing > 0, found and signed
by :class:`~coach.stream.sagittal_axis.SagittalAxisEstimator` without knowing the mount),

* the mid-swing peak is a maximum of ω above half the recent swing amplitude;
* initial contact (IC) is the first minimum of ω after the mid-swing peak;
* toe-off (TO) is the last minimum of ω before the mid-swing peak (after the previous IC).

Extrema are found causally with hysteresis (Billauer's peak-detection rule): a minimum is
confirmed as soon as ω has risen ``hysteresis_fraction`` of the swing amplitude above it, so
the algorithmic delay of IC is the time ω takes to climb that much (about 10–25 ms at running
rates). TO is emitted when ω crosses the swing threshold on its way to the mid-swing peak, so
its delay is long (≈ 0.1–0.2 s) and irrelevant for cues. Extremum times are refined by fitting
a parabola through the three samples around each extremum. Mid-swing peaks closer than the
shortest stride allowed by ``DetectionConfig.max_cadence_spm`` are ignored; an IC not found
within the longest stride (``min_cadence_spm``) is given up.

Known biases (see ``benchmarks/shank_contacts_real.py``): in running, the shank minimum after
mid-swing follows the force-plate contact by ~15–30 ms (Purcell et al. 2006 report +17 ms) and
the minimum before mid-swing follows toe-off by ~0.1 s; on the foot in walking both are within
a few samples of the reference. No offset is applied here.

Warm-up: nothing is detected until the axis is known, about 2 s (≈ 2 strides) of gait after the
start. On a time jump (gap) the extremum search restarts; the axis and amplitude are kept.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from coach.config import DetectionConfig
from coach.stream.sagittal_axis import SagittalAxisEstimator, Segment
from coach.types import EventKind, GaitEvent, SampleBlock, Side

#: A step in time longer than this many sample periods is a gap (alignment-stage contract).
GAP_SAMPLES = 1.5

#: Shortest time from the rise into swing to initial contact, s (swing lasts >= ~0.3 s even in
#: sprinting); wiggles of the swing lobe before it are not contacts.
MIN_SWING_S = 0.15

#: Smallest mid-swing peak accepted, rad/s (slow walking still exceeds ~2 rad/s).
MIN_SWING_PEAK_RAD_S = 1.0


class ShankContactDetector:
    """Initial contacts and toe-offs of one leg from its shank (or foot) gyroscope.

    Args:
        side: which leg the sensor is on; copied into every event.
        rate_hz: sampling rate of the incoming blocks, Hz (uniform).
        config: cadence limits (refractory periods).
        segment: ``"shank"`` or ``"foot"``.
        swing_fraction: a maximum counts as mid-swing when above this fraction of the swing
            amplitude (98th percentile of ω over the last 5 s).
        hysteresis_fraction: rise (fall) of ω, as a fraction of the swing amplitude, that
            confirms a minimum (maximum).

    """

    def __init__(
        self,
        side: Side,
        rate_hz: float,
        config: DetectionConfig,
        segment: Segment = "shank",
        swing_fraction: float = 0.5,
        hysteresis_fraction: float = 0.1,
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
        self._swing_fraction = swing_fraction
        self._hysteresis_fraction = hysteresis_fraction
        self._last_t = -math.inf
        self._restart()

    def reset(self) -> None:
        """Forget everything (axis included), as for a new session."""
        self._axis.reset()
        self._last_t = -math.inf
        self._restart()

    def _restart(self) -> None:
        """Restart the extremum search (after a gap); slow state is kept."""
        self._seeking_max = True
        self._ext_val = -math.inf
        self._ext_t = 0.0
        self._ext_before = math.nan  # sample before the running extremum
        self._ext_after = math.nan  # sample after it (NaN until seen)
        self._prev = math.nan
        self._last_min: tuple[float, float] | None = None  # (t, value) of last confirmed min
        self._to_done = True
        self._swing_t = -math.inf  # last accepted mid-swing peak
        self._swing_val = 0.0
        self._awaiting_ic = False
        self._last_ic_t = -math.inf
        self._rise_t = -math.inf  # first rise above the swing level since the last IC

    def update(self, block: SampleBlock) -> list[GaitEvent]:
        """Consume one block; return the events decided within it, sorted by ``t``."""
        if block.gyr is None or len(block) == 0:
            return []
        t = block.t
        if t[0] - self._last_t > self._gap_s and math.isfinite(self._last_t):
            self._restart()
        omega = self._axis.update(block.gyr)
        events: list[GaitEvent] = []
        jumps = np.flatnonzero(np.diff(t) > self._gap_s) + 1
        bounds = [0, *jumps.tolist(), len(t)]
        for start, stop in itertools.pairwise(bounds):
            if start > 0:
                self._restart()
            self._scan(t[start:stop].tolist(), omega[start:stop].tolist(), events)
        self._last_t = float(t[-1])
        events.sort(key=lambda e: e.t)
        return events

    def _scan(self, times: list[float], values: list[float], events: list[GaitEvent]) -> None:
        amplitude = max(self._axis.swing_amplitude, MIN_SWING_PEAK_RAD_S / self._swing_fraction)
        delta = self._hysteresis_fraction * amplitude
        swing_level = self._swing_fraction * amplitude
        for ti, x in zip(times, values, strict=True):
            if math.isnan(x):
                self._prev = math.nan
                continue
            if math.isnan(self._ext_after) and self._ext_t < ti:
                self._ext_after = x
            if self._seeking_max:
                if x > self._ext_val:
                    self._new_extremum(ti, x)
                elif x < self._ext_val - delta:
                    self._on_max(self._refined(), swing_level)
                    self._seeking_max = False
                    self._new_extremum(ti, x)
            elif x < self._ext_val:
                self._new_extremum(ti, x)
            elif x > self._ext_val + delta:
                self._on_min(self._refined(), ti, amplitude, events)
                self._seeking_max = True
                self._new_extremum(ti, x)
            if self._prev < swing_level <= x and self._rise_t <= self._last_ic_t:
                self._rise_t = ti
            if (
                self._seeking_max
                and not self._to_done
                and x >= swing_level
                and self._last_min is not None
            ):
                self._to_done = True
                events.append(GaitEvent(self._last_min[0], ti, EventKind.TOE_OFF, self.side))
            self._prev = x

    def _new_extremum(self, ti: float, x: float) -> None:
        self._ext_before = self._prev
        self._ext_val = x
        self._ext_t = ti
        self._ext_after = math.nan

    def _refined(self) -> tuple[float, float]:
        """Time and value of the running extremum, by a parabola through its neighbours."""
        y0, y1, y2 = self._ext_before, self._ext_val, self._ext_after
        if math.isnan(y0) or math.isnan(y2):
            return self._ext_t, y1
        curvature = y0 - 2.0 * y1 + y2
        if curvature == 0.0:
            return self._ext_t, y1
        shift = 0.5 * (y0 - y2) / curvature
        shift = min(0.5, max(-0.5, shift))
        return self._ext_t + shift / self.rate_hz, y1 - 0.25 * (y0 - y2) * shift

    def _on_max(self, peak: tuple[float, float], swing_level: float) -> None:
        t_peak, value = peak
        if value < swing_level:
            return
        if t_peak - self._swing_t < self._min_stride_s:
            if value > self._swing_val and self._awaiting_ic:
                self._swing_t, self._swing_val = t_peak, value  # a better peak of the same swing
            return
        self._swing_t, self._swing_val = t_peak, value
        self._awaiting_ic = True

    def _on_min(
        self, trough: tuple[float, float], now: float, amplitude: float, events: list[GaitEvent]
    ) -> None:
        t_min, value = trough
        if self._awaiting_ic:
            if t_min - self._swing_t > self._max_stride_s:
                self._awaiting_ic = False
            elif value < self._swing_val - 0.5 * amplitude and t_min >= self._rise_t + MIN_SWING_S:
                self._awaiting_ic = False
                self._last_ic_t = t_min
                self._last_min = None
                self._to_done = False
                events.append(GaitEvent(t_min, now, EventKind.INITIAL_CONTACT, self.side))
                return
        if t_min > self._last_ic_t:
            self._last_min = (t_min, value)
            if not math.isfinite(self._last_ic_t):
                self._to_done = False
