from __future__ import annotations

import numpy as np
import pytest

from coach.stream.strides import StrideAssembler, StrideTiming
from coach.types import EventKind, GaitEvent, Side, Stride

STEP_S = 0.35
CONTACT_S = 0.25
RATE = 200.0


def _truth_events(n_steps: int) -> list[GaitEvent]:
    events = []
    for i in range(n_steps):
        side = Side.LEFT if i % 2 == 0 else Side.RIGHT
        t_ic = 0.5 + i * STEP_S
        events.append(GaitEvent(t_ic, t_ic + 0.02, EventKind.INITIAL_CONTACT, side))
        events.append(GaitEvent(t_ic + CONTACT_S, t_ic + CONTACT_S + 0.05, EventKind.TOE_OFF, side))
    return events


def _pelvis(duration_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(0, duration_s, 1 / RATE)
    # obliquity: a stride-periodic swing: rises during right stances, falls during left ones
    phase = (t - 0.5) / (2 * STEP_S)
    obliquity = 3.0 * np.cos(2 * np.pi * phase)
    rotation = 5.0 * np.cos(2 * np.pi * phase)
    return t, obliquity, rotation


def _assemble(order_seed: int | None, n_steps: int = 20) -> list[Stride]:
    assembler = StrideAssembler(
        StrideTiming(min_step_s=0.25, max_step_s=0.6),
        pelvis_angles=True,
        toe_off_sides=frozenset({Side.LEFT, Side.RIGHT}),
    )
    events = _truth_events(n_steps)
    t, obliquity, rotation = _pelvis(0.5 + n_steps * STEP_S + 1.0)
    # deliver everything in chunks of time, sides possibly in shuffled order
    rng = np.random.default_rng(order_seed) if order_seed is not None else None
    strides: list[Stride] = []
    step = 0.1 if rng is None else 0.37
    previous_end = -1.0
    for chunk_end in np.arange(step, t[-1] + step, step):
        known = [e for e in events if previous_end < e.t_detected <= chunk_end]
        if rng is not None:
            rng.shuffle(known)
        assembler.add_events(known)
        mask = (t > previous_end) & (t <= chunk_end)
        previous_end = chunk_end
        assembler.add_pelvis(t[mask], obliquity[mask], rotation[mask], np.ones(mask.sum(), bool))
        assembler.set_watermark(Side.LEFT, chunk_end)
        assembler.set_watermark(Side.RIGHT, chunk_end)
        strides.extend(assembler.poll())
    return strides


def test_metrics_follow_the_definitions() -> None:
    strides = _assemble(None)
    assert len(strides) == 20
    last = strides.pop()  # no contact followed the last one: its step is not measurable
    assert last.cadence_spm is None and last.pelvic_rotation_deg is None
    assert [s.side for s in strides[:4]] == [Side.LEFT, Side.RIGHT, Side.LEFT, Side.RIGHT]
    for s in strides:
        assert s.contact_time_ms == pytest.approx(CONTACT_S * 1000)
        assert s.flight_time_ms == pytest.approx((STEP_S - CONTACT_S) * 1000)
        assert s.cadence_spm == pytest.approx(60 / STEP_S)
        assert s.t_detected >= s.t + STEP_S
        # left stance starts at the obliquity maximum and falls; right starts at the minimum
        assert s.pelvic_drop_deg is not None and s.pelvic_drop_deg > 3.0
        assert s.pelvic_rotation_deg == pytest.approx(10.0, abs=0.1)


def test_content_does_not_depend_on_delivery_order() -> None:
    reference = _assemble(None)
    for seed in range(5):
        shuffled = _assemble(seed)
        assert [(s.t, s.side, s.contact_time_ms, s.pelvic_drop_deg) for s in shuffled] == [
            (s.t, s.side, s.contact_time_ms, s.pelvic_drop_deg) for s in reference
        ]
        assert [s.t_detected for s in shuffled] == [s.t_detected for s in reference]


def test_missing_toe_off_and_missing_next_contact() -> None:
    assembler = StrideAssembler(
        StrideTiming(min_step_s=0.25, max_step_s=0.6),
        pelvis_angles=False,
        toe_off_sides=frozenset({Side.LEFT, Side.RIGHT}),
    )
    assembler.add_events(
        [
            GaitEvent(1.0, 1.02, EventKind.INITIAL_CONTACT, Side.LEFT),
            GaitEvent(1.35, 1.37, EventKind.INITIAL_CONTACT, Side.RIGHT),
            GaitEvent(1.6, 1.65, EventKind.TOE_OFF, Side.RIGHT),
        ]
    )
    assembler.set_watermark(Side.LEFT, 1.45)
    assembler.set_watermark(Side.RIGHT, 1.45)
    assert assembler.poll() == []  # still waiting for the left toe-off
    assembler.set_watermark(Side.LEFT, 1.6)
    (first,) = assembler.poll()
    assert first.contact_time_ms is None and first.cadence_spm == pytest.approx(60 / 0.35)
    assert first.pelvic_drop_deg is None
    assembler.set_watermark(Side.LEFT, 3.0)
    assembler.set_watermark(Side.RIGHT, 3.0)
    (second,) = assembler.poll()  # no left contact followed: the step is not measurable
    assert second.side is Side.RIGHT and second.cadence_spm is None
    assert second.contact_time_ms == pytest.approx(250.0)
