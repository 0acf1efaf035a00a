"""Stride assembly: from foot-contact events and pelvis angles to one :class:`Stride` per stance.

Definitions (design.md section 3): a stance runs from an initial contact (IC) of one side to the
next IC of the other side. Contact time = IC to toe-off (TO) of the same foot; flight time = TO to
the next contralateral IC (negative when both feet are on the ground: walking's double support);
cadence from this IC to the next one. Contralateral pelvic drop = how far the swing side of the
pelvis falls below its level at IC, at most, from IC to TO (to the next IC when the TO is not
known): right stance: max rise of obliquity above its IC value; left stance: max fall below it.
Pelvic rotation = peak-to-peak rotation from this IC to the next. Braking = the pelvis's forward
speed at IC minus its lowest value during the stance (the speed lost to braking), m/s.

Events reach the assembler with different detection delays and from different sensors, so a
stride is emitted only once everything it depends on is known, judged by per-source watermarks
(the last sample time each source has processed). Its content depends on the samples alone, not
on arrival order or block sizes; its ``t_detected`` is the latest sample time it needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from coach.stream.ring import TimeRing
from coach.types import EventKind, FloatArray, GaitEvent, Side, Stride

STANDARD_GRAVITY = 9.80665


@dataclass(frozen=True, slots=True)
class StrideTiming:
    """Timing limits of stride assembly, s.

    Attributes:
        min_step_s: shortest plausible step (from the highest cadence).
        max_step_s: longest plausible step (from the lowest cadence); longer means a missed IC.
        toe_off_wait_s: how long after the next IC a late toe-off is still waited for.
        detection_slack_s: bound on event detection delay, used only to give up on a missing
            next contact.
        impact_window_s: after IC, where the shank's impact peak is looked for.

    """

    min_step_s: float
    max_step_s: float
    toe_off_wait_s: float = 0.15
    detection_slack_s: float = 0.4
    impact_window_s: float = 0.06


QualityLookup = Callable[[float, float], frozenset[str]]


def _no_quality(t_start: float, t_end: float) -> frozenset[str]:
    return frozenset()


class StrideAssembler:
    """Pair contacts into stances and measure each one.

    Args:
        timing: timing limits.
        pelvis_angles: whether pelvis angles will be fed (else pelvic metrics stay empty).
        toe_off_sides: sides whose event source reports toe-offs.
        quality: returns the quality flags active in a time window.
        ring_s: seconds of pelvis and shank history kept.
        ring_rate_hz: highest sample rate expected (sizes the history buffers).

    """

    def __init__(
        self,
        timing: StrideTiming,
        pelvis_angles: bool,
        toe_off_sides: frozenset[Side],
        quality: QualityLookup = _no_quality,
        ring_s: float = 6.0,
        ring_rate_hz: float = 1000.0,
    ) -> None:
        self.timing = timing
        self._uses_pelvis = pelvis_angles
        self._toe_off_sides = toe_off_sides
        self._quality = quality
        capacity = int(ring_s * ring_rate_hz)
        # pelvis columns: obliquity_deg, rotation_deg, rotation valid (1/0), vertical_position_m,
        # obliquity valid (1/0), forward_velocity_mps
        self._pelvis = TimeRing(capacity, 6)
        self._impact = {Side.LEFT: TimeRing(capacity, 1), Side.RIGHT: TimeRing(capacity, 1)}
        self._contacts: list[GaitEvent] = []
        self._toe_offs: list[GaitEvent] = []
        self._watermark: dict[Side, float] = {Side.LEFT: -np.inf, Side.RIGHT: -np.inf}
        self._pelvis_watermark = -np.inf
        self._pelvis_available = pelvis_angles
        self._sourceless: set[Side] = set()

    def reset(self) -> None:
        """Forget every pending event and all history."""
        self.__init__(  # type: ignore[misc]
            self.timing, self._uses_pelvis, self._toe_off_sides, self._quality
        )

    def add_events(self, events: list[GaitEvent]) -> None:
        """Take new contact events (any side, any order between sides)."""
        for event in events:
            target = self._contacts if event.kind is EventKind.INITIAL_CONTACT else self._toe_offs
            target.append(event)
        self._contacts.sort(key=lambda e: e.t)
        self._toe_offs.sort(key=lambda e: e.t)

    def set_watermark(self, side: Side, t: float) -> None:
        """The event source of ``side`` has processed every sample up to ``t`` (s)."""
        sides = (Side.LEFT, Side.RIGHT) if side is Side.UNKNOWN else (side,)
        for s in sides:
            self._watermark[s] = max(self._watermark[s], t)

    def add_pelvis(
        self,
        t: FloatArray,
        obliquity_deg: FloatArray,
        rotation_deg: FloatArray,
        valid: np.ndarray,
        vertical_position_m: FloatArray | None = None,
        obliquity_valid: np.ndarray | None = None,
        forward_velocity_mps: FloatArray | None = None,
    ) -> None:
        """Take per-sample pelvis angles (and vertical position when known).

        ``valid`` says where the rotation can be trusted; ``obliquity_valid`` where the
        obliquity can (it does not depend on the heading, so it survives turns); it defaults to
        ``valid``.
        """
        if t.shape[0] == 0:
            return
        vertical = np.full(t.shape[0], np.nan)
        if vertical_position_m is not None:
            vertical = vertical_position_m
        obliquity_ok = valid if obliquity_valid is None else obliquity_valid
        forward = np.full(t.shape[0], np.nan)
        if forward_velocity_mps is not None:
            forward = forward_velocity_mps
        self._pelvis.extend(
            t,
            np.column_stack(
                (obliquity_deg, rotation_deg, valid.astype(float), vertical, obliquity_ok, forward)
            ),
        )
        self._pelvis_watermark = float(t[-1])

    def set_pelvis_available(self, available: bool) -> None:
        """Whether pelvis angles are still coming (a dropped pelvis sensor stops the wait)."""
        self._pelvis_available = self._uses_pelvis and available

    def add_shank_acc(self, side: Side, t: FloatArray, acc: FloatArray) -> None:
        """Take a shank's specific force (n, 3) in m/s², for the impact peak."""
        if side in self._impact and t.shape[0]:
            self._impact[side].extend(t, np.linalg.norm(acc, axis=1)[:, None])

    def poll(self) -> list[Stride]:
        """Strides that are now complete, in time order."""
        strides: list[Stride] = []
        while self._contacts:
            stride = self._try_close(self._contacts[0])
            if stride is None:
                break
            strides.append(stride)
            self._contacts.pop(0)
            first_t = self._contacts[0].t if self._contacts else stride.t
            self._toe_offs = [e for e in self._toe_offs if e.t > min(first_t, stride.t)]
        return strides

    def _next_contact(self, start: GaitEvent) -> GaitEvent | None:
        for event in self._contacts:
            if event.t <= start.t:
                continue
            if start.side is Side.UNKNOWN or event.side is Side.UNKNOWN:
                return event
            if event.side is start.side.other:
                return event
        return None

    def _try_close(self, start: GaitEvent) -> Stride | None:
        timing = self.timing
        nxt = self._next_contact(start)
        other = start.side.other if start.side is not Side.UNKNOWN else Side.UNKNOWN
        if nxt is not None and nxt.t - start.t > timing.max_step_s:
            nxt = None
        step_s: float | None = None
        if nxt is None and other in self._sourceless:
            # one side only: the step is half the stride to this side's next contact
            closing = self._one_sided_close(start)
            if closing is None:
                return None
            end_t, end_detected, step_s = closing
        elif nxt is None:
            give_up_at = start.t + timing.max_step_s + timing.detection_slack_s
            other_mark = (
                min(self._watermark.values()) if other is Side.UNKNOWN else self._watermark[other]
            )
            if other_mark < give_up_at:
                return None
            end_t, end_detected = start.t + timing.max_step_s, give_up_at
        else:
            end_t, end_detected = nxt.t, nxt.t_detected
            step_s = end_t - start.t

        toe_off, toe_off_known = self._toe_off_for(start, end_t)
        if not toe_off_known:
            return None
        needs_pelvis_until = end_t
        if self._pelvis_available and self._pelvis_watermark < needs_pelvis_until:
            return None
        impact_end = start.t + timing.impact_window_s
        shank = self._impact.get(start.side)
        shank_behind = shank is not None and shank.last_t < impact_end
        if shank_behind and self._watermark[start.side] < impact_end:
            return None

        detected = max(end_detected, start.t_detected)
        if toe_off is not None:
            detected = max(detected, toe_off.t_detected)
        elif start.side in self._toe_off_sides:
            detected = max(detected, end_t + timing.toe_off_wait_s)
        if self._pelvis_available:
            detected = max(detected, end_t)

        contact_end = toe_off.t if toe_off is not None else end_t
        drop, rotation, vertical, braking = self._pelvis_metrics(
            start, contact_end, end_t, step_s is not None
        )
        return Stride(
            t=start.t,
            t_detected=detected,
            side=start.side,
            contact_time_ms=None if toe_off is None else (toe_off.t - start.t) * 1000.0,
            flight_time_ms=(
                None if toe_off is None or step_s is None else (end_t - toe_off.t) * 1000.0
            ),
            cadence_spm=None if step_s is None else 60.0 / step_s,
            pelvic_drop_deg=drop,
            pelvic_rotation_deg=rotation,
            vertical_oscillation_cm=vertical,
            impact_peak_g=self._impact_peak(start),
            braking_mps=braking,
            quality=self._quality(start.t, end_t),
        )

    def set_side_without_source(self, side: Side) -> None:
        """No sensor reports this side's contacts: stop waiting for them.

        The other side's steps are then measured from its own stride (half the time to its
        next contact), so cadence is still known with one shank sensor.
        """
        self._sourceless.add(side)
        self._watermark[side] = np.inf

    def _one_sided_close(self, start: GaitEvent) -> tuple[float, float, float | None] | None:
        """(end of the step, time it is known, step length) with one side only; None: wait."""
        longest = 2.0 * self.timing.max_step_s
        for event in self._contacts:
            if event.side is start.side and event.t > start.t:
                stride = event.t - start.t
                if stride <= longest:
                    return start.t + stride / 2.0, event.t_detected, stride / 2.0
                break
        give_up_at = start.t + longest + self.timing.detection_slack_s
        if self._watermark[start.side] < give_up_at:
            return None
        return start.t + self.timing.max_step_s, give_up_at, None

    def _toe_off_for(self, start: GaitEvent, end_t: float) -> tuple[GaitEvent | None, bool]:
        """The stance's toe-off, and whether the answer is final."""
        if start.side not in self._toe_off_sides:
            return None, True
        deadline = end_t + self.timing.toe_off_wait_s
        for event in self._toe_offs:
            in_stance = event.side is start.side and start.t < event.t < end_t
            if in_stance and event.t_detected <= deadline:
                return event, True
        return None, self._watermark[start.side] >= deadline

    def _pelvis_metrics(
        self, start: GaitEvent, contact_end: float, end_t: float, full_step: bool
    ) -> tuple[float | None, float | None, float | None, float | None]:
        """Drop, rotation, vertical oscillation and braking of a stance (None: not measurable)."""
        if not self._pelvis_available:
            return None, None, None, None
        t, values = self._pelvis.window(start.t - 0.05, end_t)
        if t.shape[0] < 3 or t[0] > start.t:
            return None, None, None, None
        first = int(np.searchsorted(t, start.t))  # samples from IC on (t sorted)
        stance_end = int(np.searchsorted(t, contact_end, side="right"))
        if first >= t.shape[0]:
            return None, None, None, None
        weight = 0.0 if first == 0 else (start.t - t[first - 1]) / (t[first] - t[first - 1])
        at_contact = values[max(first - 1, 0)] + weight * (
            values[first] - values[max(first - 1, 0)]
        )
        stance, step = values[first:stance_end], values[first:]
        drop = braking = rotation_pp = vertical_cm = None
        if stance.shape[0] and values[:, 4].min() > 0.5:
            if start.side is Side.RIGHT:
                drop = float(stance[:, 0].max() - at_contact[0])
            elif start.side is Side.LEFT:
                drop = float(at_contact[0] - stance[:, 0].min())
        rotation_ok = values[:, 2].min() > 0.5
        if stance.shape[0] and rotation_ok and np.isfinite(values[:, 5]).all():
            braking = float(at_contact[5] - stance[:, 5].min())
        if full_step and rotation_ok:
            rotation_pp = float(step[:, 1].max() - step[:, 1].min())
        if full_step and np.isfinite(step[:, 3]).all():
            vertical_cm = float((step[:, 3].max() - step[:, 3].min()) * 100.0)
        return drop, rotation_pp, vertical_cm, braking

    def _impact_peak(self, start: GaitEvent) -> float | None:
        ring = self._impact.get(start.side)
        if ring is None:
            return None
        t, values = ring.window(start.t - 0.01, start.t + self.timing.impact_window_s)
        if t.shape[0] == 0:
            return None
        return float(np.max(values[:, 0]) / STANDARD_GRAVITY)
