"""The streaming core end to end: chunking invariance, sensor subsets, accuracy."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from coach.config import CoachConfig
from coach.evaluation import (
    match_events,
    match_strides,
    metric_rmse,
    read_truth_angles,
    read_truth_events,
    truth_strides,
)
from coach.runtime import RunResult, replay_blocks, replay_session, sensor_specs
from coach.sources.csv_folder import CsvSession, read_session
from coach.sources.simulate import SimulatedRun, SimulationParams, simulate
from coach.types import EventKind, Location, SampleBlock, Side

CONFIG = CoachConfig()


@functools.cache
def _simulated(seed: int, duration_s: float = 40.0, rate_hz: float = 200.0) -> SimulatedRun:
    return simulate(
        SimulationParams(
            duration_s=duration_s,
            seed=seed,
            rate_hz=rate_hz,
            mount="random",
            noise="realistic",
            packet_loss=0.01,
            clock_drift_ppm=100.0,
        )
    )


def _subset(run: SimulatedRun, locations: tuple[Location, ...]) -> CsvSession:
    return CsvSession({k: v for k, v in run.blocks.items() if k in locations})


def _content(result: RunResult) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    events = sorted((e.t, e.t_detected, e.kind.value, e.side.value) for e in result.events)
    strides = sorted(
        (
            s.t,
            s.t_detected,
            s.side.value,
            s.contact_time_ms,
            s.flight_time_ms,
            s.cadence_spm,
            s.pelvic_drop_deg,
            s.pelvic_rotation_deg,
            s.vertical_oscillation_cm,
            s.impact_peak_g,
            tuple(sorted(s.quality)),
        )
        for s in result.strides
    )
    return events, strides


def _random_blocks(session: CsvSession, data: st.DataObject) -> list[SampleBlock]:
    """Cut every sensor at random points; order blocks as a live stream would deliver them.

    Blocks are at most 1 s long and arrive up to 0.5 s late, so no sensor runs more than
    1.5 s ahead of another: the core keeps 6 s of history for stride assembly.
    """
    pieces: list[tuple[float, int, SampleBlock]] = []
    for location, block in session.blocks.items():
        n = len(block)
        cuts = data.draw(
            st.lists(st.integers(1, n - 1), max_size=200, unique=True), label=location.value
        )
        edges = sorted({0, n, *cuts, *range(0, n, 200)})
        arrival = -np.inf
        for a, b in itertools.pairwise(edges):
            jitter = data.draw(st.floats(0.0, 0.5), label="arrival jitter")
            arrival = max(arrival, float(block.t[b - 1]) + jitter)  # each sensor stays in order
            pieces.append((arrival, len(pieces), block.slice(a, b)))
    pieces.sort()
    return [p[2] for p in pieces]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
@given(data=st.data())
def test_any_blocks_and_interleaving_give_identical_results(data: st.DataObject) -> None:
    session = CsvSession(_simulated(1, duration_s=25.0).blocks)
    reference = _content(replay_session(CONFIG, session, block_s=1.0))
    assert len(reference[1]) > 40
    shuffled = replay_blocks(CONFIG, sensor_specs(session), _random_blocks(session, data))
    assert _content(shuffled) == reference


@pytest.mark.parametrize(
    ("locations", "expect_drop", "expect_contact_time"),
    [
        ((Location.PELVIS, Location.LEFT_SHANK, Location.RIGHT_SHANK), True, True),
        ((Location.LEFT_SHANK, Location.RIGHT_SHANK), False, True),
        ((Location.PELVIS,), True, False),
        ((Location.PELVIS, Location.LEFT_SHANK), True, True),
    ],
)
def test_any_subset_of_sensors_works(
    locations: tuple[Location, ...], expect_drop: bool, expect_contact_time: bool
) -> None:
    run = _simulated(2)
    result = replay_session(CONFIG, _subset(run, locations), block_s=1.0)
    ic = match_events(result.events, run.events, EventKind.INITIAL_CONTACT, 0.15, (8.0, 39.0))
    assert ic.found_fraction >= 0.97, ic
    assert ic.spurious_fraction <= 0.02
    late = [s for s in result.strides if s.t > 8.0 and s.cadence_spm is not None]
    assert late
    assert all((s.pelvic_drop_deg is not None) == expect_drop for s in late if not s.quality)
    if not expect_contact_time:
        assert all(s.contact_time_ms is None for s in result.strides)


def test_pelvis_without_gyroscope_gives_contacts_but_no_angles() -> None:
    run = _simulated(3)
    pelvis = run.blocks[Location.PELVIS]
    session = CsvSession({Location.PELVIS: SampleBlock(Location.PELVIS, pelvis.t, pelvis.acc)})
    result = replay_session(CONFIG, session, block_s=1.0)
    ic = match_events(result.events, run.events, EventKind.INITIAL_CONTACT, 0.15, (8.0, 39.0))
    assert ic.found_fraction >= 0.95
    assert all(s.pelvic_drop_deg is None and s.pelvic_rotation_deg is None for s in result.strides)


@pytest.mark.parametrize("rate_hz", [200.0, 100.0])
def test_accuracy_on_the_simulator(rate_hz: float) -> None:
    run = _simulated(4, duration_s=60.0, rate_hz=rate_hz)
    result = replay_session(CONFIG, CsvSession(run.blocks), block_s=1.0)
    span = (8.0, 59.0)
    ic = match_events(result.events, run.events, EventKind.INITIAL_CONTACT, 0.15, span)
    assert ic.found_fraction >= 0.99 and ic.spurious_fraction <= 0.01
    assert ic.median_abs_ms() <= 25.0
    assert ic.median_delay_ms() <= 80.0
    pairs = [p for p in match_strides(result.strides, run.strides, 0.15) if p[1].t > span[0]]
    drop, n = metric_rmse(pairs, "pelvic_drop_deg")
    rotation, _ = metric_rmse(pairs, "pelvic_rotation_deg")
    assert n > 100
    assert drop <= 1.0
    assert rotation <= 1.5


def test_accuracy_on_real_running(shared_data: Path) -> None:
    name = "rbds001_run2p5"
    session = read_session(shared_data / "sessions" / name)
    truth = shared_data / "truth" / name
    events = read_truth_events(truth)
    stances = truth_strides(events, read_truth_angles(truth))
    result = replay_session(CONFIG, session, block_s=0.5)
    span = (8.0, 29.5)
    ic = match_events(result.events, events, EventKind.INITIAL_CONTACT, 0.15, span)
    assert ic.found_fraction >= 0.97 and ic.spurious_fraction <= 0.03
    assert ic.median_abs_ms() <= 35.0
    assert ic.side_fraction() == 1.0
    pairs = [p for p in match_strides(result.strides, stances, 0.15) if p[1].t > span[0]]
    drop, n = metric_rmse(pairs, "pelvic_drop_deg")
    rotation, _ = metric_rmse(pairs, "pelvic_rotation_deg")
    assert n >= 40
    assert drop <= 0.8 and rotation <= 1.2
    assert {s.side for s in result.strides} == {Side.LEFT, Side.RIGHT}


def test_gap_flags_the_strides_it_touches() -> None:
    run = _simulated(5)
    blocks = dict(run.blocks)
    shank = blocks[Location.LEFT_SHANK]
    keep = (shank.t < 20.0) | (shank.t > 21.0)
    blocks[Location.LEFT_SHANK] = SampleBlock(
        Location.LEFT_SHANK,
        shank.t[keep],
        shank.acc[keep],
        None if shank.gyr is None else shank.gyr[keep],
    )
    result = replay_session(CONFIG, CsvSession(blocks), block_s=1.0)
    flagged = [s for s in result.strides if "gap" in s.quality]
    assert flagged and all(19.0 < s.t < 22.5 for s in flagged)
    assert [q for q in result.quality if q.flag.value == "gap"]


def test_one_shank_alone_still_gives_cadence_from_its_stride() -> None:
    run = _simulated(6)
    result = replay_session(CONFIG, _subset(run, (Location.LEFT_SHANK,)), block_s=1.0)
    strides = [s for s in result.strides if s.t > 8.0]
    assert len(strides) > 20 and {s.side for s in strides} == {Side.LEFT}
    truth = np.median([s.cadence_spm for s in run.strides if s.cadence_spm])
    measured = [s.cadence_spm for s in strides if s.cadence_spm is not None]
    assert len(measured) >= len(strides) - 2
    assert abs(np.median(measured) - truth) < 2.0
    assert all(s.contact_time_ms is not None for s in strides[:-1])


def test_clipped_gyroscope_is_flagged_but_a_clipped_shank_impact_is_not() -> None:
    from coach.stream.quality import SaturationDetector

    t = np.arange(400) / 200.0
    signal = 30.0 * np.sin(2 * np.pi * 1.4 * t)[:, None] * np.ones(3)
    clipped = np.clip(signal, -25.0, 25.0)
    block = SampleBlock(Location.LEFT_SHANK, t, clipped.copy(), signal / 5.0)
    assert SaturationDetector(check_acc=False).update(block).size == 0
    assert SaturationDetector(check_acc=True).update(block).size > 20
    gyro_clipped = SampleBlock(Location.LEFT_SHANK, t, signal, np.clip(signal, -20.0, 20.0))
    assert SaturationDetector(check_acc=False).update(gyro_clipped).size > 20
    quantised = SampleBlock(Location.PELVIS, t, np.round(signal * 200) / 200, None)
    assert SaturationDetector().update(quantised).size == 0
