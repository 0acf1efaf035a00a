"""Beat-aligned cues: start speech so that it is heard at the runner's next foot contact.

A cue should land within the next step (~350 ms at 170 spm), but Bluetooth earbuds alone add
100–300 ms of output latency (design.md section 7). When ``beat_aligned`` is on, speech is
scheduled at the predicted next initial contact minus the output latency, so that the first
syllable coincides with a contact, like a metronome beat.
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from coach.types import Stride

#: Recent strides used to estimate the step period.
_HISTORY = 4


def predict_play_at(
    last_contact_t: float, step_s: float, t_decision: float, latency_s: float
) -> float:
    """Earliest time ≥ ``t_decision`` at which speech must start to be heard at a contact.

    Contacts are predicted at ``last_contact_t + n × step_s`` (n ≥ 0); the result is the
    first ``contact - latency_s`` that is not before ``t_decision``. All times in s.
    """
    if step_s <= 0.0 or not math.isfinite(step_s):
        return t_decision
    n = max(0, math.ceil((t_decision + latency_s - last_contact_t) / step_s - 1e-9))
    return last_contact_t + n * step_s - latency_s


class BeatPredictor:
    """Tracks recent initial contacts and cadence to predict the next contact.

    Args:
        latency_s: audio output latency to subtract, s (``AudioConfig.output_latency_ms``/1000).

    """

    def __init__(self, latency_s: float) -> None:
        self._latency_s = latency_s
        self._contacts: deque[float] = deque(maxlen=_HISTORY + 1)
        self._cadences: deque[float] = deque(maxlen=_HISTORY)

    def reset(self) -> None:
        """Forget the recent contacts."""
        self._contacts.clear()
        self._cadences.clear()

    def observe(self, stride: Stride) -> None:
        """Record a stride's initial contact (``t``) and cadence."""
        self._contacts.append(stride.t)
        if stride.cadence_spm is not None and stride.cadence_spm > 0.0:
            self._cadences.append(stride.cadence_spm)

    def step_s(self) -> float | None:
        """Current step period, s: from the median recent cadence, else contact intervals."""
        if self._cadences:
            return 60.0 / _median(list(self._cadences))
        contacts = list(self._contacts)
        diffs = [b - a for a, b in itertools.pairwise(contacts) if b > a]
        return _median(diffs) if diffs else None

    def play_at(self, stride: Stride, t_decision: float) -> float:
        """Speech start for a cue decided at ``t_decision`` (s) on ``stride`` (observed)."""
        step = self.step_s()
        if step is None:
            return t_decision
        last_contact = stride.t
        if stride.cadence_spm is not None and stride.cadence_spm > 0.0:
            # The stride's cadence was measured up to the next (contralateral) contact.
            last_contact = stride.t + 60.0 / stride.cadence_spm
        return predict_play_at(last_contact, step, t_decision, self._latency_s)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return 0.5 * (ordered[mid - 1] + ordered[mid])
