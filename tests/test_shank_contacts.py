from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from coach.config import DetectionConfig
from coach.sources.csv_folder import read_session
from coach.stream.sagittal_axis import SagittalAxisEstimator
from coach.stream.shank_contacts import ShankContactDetector
from coach.types import EventKind, GaitEvent, Location, SampleBlock, Side

CONFIG = DetectionConfig()


STRIDE_S = 0.7
CONTACT_PHASE = 0.72  # foot strike, as a fraction of the stride, in synthetic_shank


def synthetic_shank(
    rate: float, seconds: float = 12.0, seed: int = 0, impact: bool = False
) -> SampleBlock:
    """Crude shank-like sagittal rate (mid-swing hump, contact dip) on an oblique axis.

    The swing amplitude drifts by ±30 % (pace changes), so the detector's amplitude-dependent
    thresholds change during the run. With ``impact``, |a| jumps by 30 m/s² over 10 ms at
    each foot strike (phase ``CONTACT_PHASE``, before the contact minimum of ω at 0.75).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds, 1.0 / rate)
    phase = (t / STRIDE_S) % 1.0
    omega = (
        7.0 * np.exp(-(((phase - 0.55) / 0.08) ** 2))
        - 5.0 * np.exp(-(((phase - 0.75) / 0.05) ** 2))
        - 3.0 * np.exp(-(((phase - 0.2) / 0.06) ** 2))
    ) * (1.0 + 0.3 * np.sin(2 * np.pi * t / 7.0))
    axis = np.array([0.3, 0.9, -0.2])
    axis /= np.linalg.norm(axis)
    gyr = omega[:, None] * axis + rng.normal(0, 0.05, (t.size, 3))
    acc = np.tile([0.0, 0.0, 9.81], (t.size, 1)) + rng.normal(0, 0.2, (t.size, 3))
    if impact:
        since = (phase - CONTACT_PHASE) * STRIDE_S
        acc[:, 2] += (
            30.0 * np.clip(since / 0.01, 0.0, 1.0) * np.exp(-np.clip(since, 0, None) / 0.02)
        )
    return SampleBlock(Location.RIGHT_SHANK, t, acc, gyr)


def run(
    block: SampleBlock, rate: float, splits: list[int] | None = None, segment: str = "shank"
) -> list[GaitEvent]:
    det = ShankContactDetector(block.location.side, rate, CONFIG, segment=segment)  # type: ignore[arg-type]
    bounds = [0, *(splits or []), len(block)]
    out: list[GaitEvent] = []
    for a, b in itertools.pairwise(bounds):
        if b > a:
            out += det.update(block.slice(a, b))
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2399), max_size=40))
def test_chunking_invariance(cuts: list[int]) -> None:
    block = synthetic_shank(200.0)
    reference = run(block, 200.0)
    assert len(reference) > 20
    assert run(block, 200.0, sorted(set(cuts))) == reference


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1199), max_size=60))
def test_chunking_invariance_with_impacts_at_100_hz(cuts: list[int]) -> None:
    block = synthetic_shank(100.0, impact=True)
    reference = run(block, 100.0)
    assert len(reference) > 20
    assert run(block, 100.0, sorted(set(cuts))) == reference


def test_single_samples_equal_one_block() -> None:
    block = synthetic_shank(100.0, seconds=8.0)
    assert run(block, 100.0, list(range(1, len(block)))) == run(block, 100.0)


def test_events_sorted_and_causal() -> None:
    block = synthetic_shank(200.0)
    det = ShankContactDetector(Side.RIGHT, 200.0, CONFIG)
    for i in range(0, len(block), 37):
        events = det.update(block.slice(i, i + 37))
        assert [e.t for e in events] == sorted(e.t for e in events)
        for e in events:
            assert e.side is Side.RIGHT
            assert e.t <= e.t_detected <= block.t[min(i + 36, len(block) - 1)] + 1e-12


def test_axis_found_with_forward_swing_positive() -> None:
    block = synthetic_shank(200.0)
    est = SagittalAxisEstimator(200.0, "shank")
    est.update(block.gyr)  # type: ignore[arg-type]
    axis = est.axis
    assert axis is not None
    expected = np.array([0.3, 0.9, -0.2]) / np.linalg.norm([0.3, 0.9, -0.2])
    assert float(axis @ expected) > 0.99


@pytest.mark.parametrize("kind", ["zeros", "constant", "noise"])
def test_degenerate_input_gives_no_events(kind: str) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    t = np.arange(n) / 200.0
    if kind == "zeros":
        gyr = np.zeros((n, 3))
    elif kind == "constant":
        gyr = np.tile([0.3, -1.0, 2.0], (n, 1))
    else:
        gyr = rng.normal(0.0, 3.0, (n, 3))
    block = SampleBlock(Location.LEFT_SHANK, t, rng.normal(0, 5, (n, 3)), gyr)
    events = run(block, 200.0, list(range(50, n, 50)))
    assert len(events) <= 2


def test_gap_restarts_without_error() -> None:
    block = synthetic_shank(200.0, seconds=20.0)
    t = block.t.copy()
    t[2000:] += 3.0  # a 3 s gap
    gapped = SampleBlock(block.location, t, block.acc, block.gyr)
    events = run(gapped, 200.0, [1000, 2000, 2500])
    assert not any(10.0 < e.t < 13.0 for e in events)
    assert sum(e.t > 13.0 and e.kind == EventKind.INITIAL_CONTACT for e in events) >= 8


@pytest.mark.parametrize("rate", [200.0, 100.0])
def test_impact_times_initial_contact(rate: float) -> None:
    block = synthetic_shank(rate, impact=True)
    ic = np.array([e.t for e in run(block, rate) if e.kind == EventKind.INITIAL_CONTACT])
    strike = (np.floor(ic / STRIDE_S) + CONTACT_PHASE) * STRIDE_S
    assert ic.size >= 10
    # the steepest rise of the 10-ms impact ramp lies within it
    assert np.all(np.abs(ic - strike - 0.005) <= 0.006 + 1.0 / rate)


@pytest.mark.parametrize("rate", [200.0, 100.0])
def test_impact_decides_initial_contact_early(rate: float) -> None:
    block = synthetic_shank(rate, impact=True)
    delays = [
        e.t_detected - e.t
        for e in run(block, rate, list(range(1, len(block), 3)))
        if e.kind == EventKind.INITIAL_CONTACT
    ]
    # the impact is decided once the rise of |a| slows, not when the ω minimum is confirmed
    assert len(delays) >= 10
    assert max(delays) <= 0.012 + 2.0 / rate


def test_filtered_impact_initial_contact_at_end_of_fall() -> None:
    """At low rates the impact may be gone: IC is where the late-swing fall of |a| stops."""
    rate = 100.0
    block = synthetic_shank(rate)
    since = (((block.t / STRIDE_S) % 1.0) - CONTACT_PHASE) * STRIDE_S
    acc = block.acc.copy()
    # |a| falls by 20 m/s² over the 20 ms before contact, stays flat, then a slow stance rise
    # starts 40 ms after contact (too late to be the impact)
    acc[:, 2] += 20.0 * np.clip(-since / 0.02, 0.0, 1.0) * (since > -0.2)
    acc[:, 2] += 8.0 * np.clip((since - 0.04) / 0.03, 0.0, 1.0) * (since < 0.15)
    ic = np.array(
        [
            e.t
            for e in run(SampleBlock(block.location, block.t, acc, block.gyr), rate)
            if e.kind == EventKind.INITIAL_CONTACT
        ]
    )
    strike = (np.floor(ic / STRIDE_S + 0.5 - CONTACT_PHASE) + CONTACT_PHASE) * STRIDE_S
    assert ic.size >= 10
    assert np.all(np.abs(ic - strike) <= 1.0 / rate)


def test_without_impact_initial_contact_is_gyro_minimum() -> None:
    block = synthetic_shank(200.0)
    ic = np.array([e.t for e in run(block, 200.0) if e.kind == EventKind.INITIAL_CONTACT])
    contact_minimum = (np.floor(ic / STRIDE_S) + 0.75) * STRIDE_S
    assert np.all(np.abs(ic - contact_minimum) <= 0.02)


def test_without_gyroscope_returns_nothing() -> None:
    det = ShankContactDetector(Side.LEFT, 100.0, CONFIG)
    block = SampleBlock(Location.LEFT_SHANK, np.arange(10) / 100.0, np.zeros((10, 3)))
    assert det.update(block) == []


def _truth(data: Path, name: str, side: str, kind: str) -> np.ndarray:
    with open(data / "truth" / name / "events.csv") as f:
        return np.array(
            [float(r["t"]) for r in csv.DictReader(f) if r["side"] == side and r["kind"] == kind]
        )


def _score(truth: np.ndarray, found: np.ndarray, window: float) -> tuple[float, np.ndarray]:
    errors = []
    for tt in truth:
        d = found - tt
        if d.size and np.min(np.abs(d)) <= window:
            errors.append(d[np.argmin(np.abs(d))])
    return len(errors) / max(1, truth.size), np.array(errors)


@pytest.mark.parametrize("rate", [200.0, 100.0])
def test_rbds_running_shanks(shared_data: Path, rate: float) -> None:
    session = read_session(shared_data / "sessions" / "rbds001_run2p5")
    for loc in (Location.LEFT_SHANK, Location.RIGHT_SHANK):
        block = session.blocks[loc]
        if rate != 200.0:
            gyr = resample_poly(block.gyr, 1, 2, axis=0)
            acc = resample_poly(block.acc, 1, 2, axis=0)
            block = SampleBlock(loc, block.t[0] + np.arange(len(gyr)) / rate, acc, gyr)
        events = run(block, rate, list(range(0, len(block), round(rate * 0.25))))
        ic = np.array([e.t for e in events if e.kind == EventKind.INITIAL_CONTACT])
        truth = _truth(shared_data, "rbds001_run2p5", loc.side.value, "initial_contact")
        truth = truth[truth > 3.0]  # after the ~2 s axis warm-up
        found_rate, errors = _score(truth, ic, 0.09)
        assert found_rate >= 0.95
        # IC from the steepest rise of |a| (+8 ms here; the gyro minimum alone is +27 ms,
        # Purcell et al. report +17 ms): honest bounds, not tuned ones
        assert np.median(np.abs(errors)) <= 0.02
        # decided from the impact, before the contact minimum of ω is confirmed (~14 ms at
        # 200 Hz, ~20 ms at 100 Hz here; the minimum would take ~32 ms)
        delays = [e.t_detected - e.t for e in events if e.kind == EventKind.INITIAL_CONTACT]
        assert np.median(delays) <= 0.025
        assert sum(e.t > 3.0 for e in events if e.kind == EventKind.INITIAL_CONTACT) <= (
            truth.size + 2
        )
        # running toe-off: onset of the swing acceleration (the pre-swing minimum is +85 ms)
        to = np.array([e.t for e in events if e.kind == EventKind.TOE_OFF])
        truth_to = _truth(shared_data, "rbds001_run2p5", loc.side.value, "toe_off")
        truth_to = truth_to[truth_to > 3.5]
        found_rate, errors = _score(truth_to, to, 0.09)
        assert found_rate >= 0.95
        assert np.median(np.abs(errors)) <= 0.02


@pytest.mark.parametrize("name", ["ipol_s01_t4", "ipol_s12_t1", "ipol_s19_t3"])
def test_ipol_walking_feet(shared_data: Path, name: str) -> None:
    session = read_session(shared_data / "sessions" / name)
    for loc in (Location.LEFT_FOOT, Location.RIGHT_FOOT):
        block = session.blocks[loc]
        events = run(block, 100.0, list(range(0, len(block), 10)), segment="foot")
        ic = np.array([e.t for e in events if e.kind == EventKind.INITIAL_CONTACT])
        truth = _truth(shared_data, name, loc.side.value, "initial_contact")[2:]
        found_rate, errors = _score(truth, ic, 0.15)
        assert found_rate >= 0.85
        assert np.median(np.abs(errors)) <= 0.03
        # walking feet: no swing wiggles or post-contact rebounds taken for contacts
        everything = _truth(shared_data, name, loc.side.value, "initial_contact")
        spurious = [t for t in ic if np.min(np.abs(everything - t)) > 0.15]
        assert len(spurious) <= 1


def _ic_times(block: SampleBlock, rate: float) -> np.ndarray:
    return np.array([e.t for e in run(block, rate) if e.kind == EventKind.INITIAL_CONTACT])


def test_contact_rebound_is_not_a_swing() -> None:
    """A spike of ω right after contact (foot slap rebound) must not start a new swing."""
    rate = 100.0
    block = synthetic_shank(rate, seconds=20.0)
    phase = (block.t / STRIDE_S) % 1.0
    axis = np.array([0.3, 0.9, -0.2]) / np.linalg.norm([0.3, 0.9, -0.2])
    rebound = 6.0 * np.exp(-(((phase - 0.82) / 0.015) ** 2))
    gyr = block.gyr + rebound[:, None] * axis
    ic = _ic_times(SampleBlock(block.location, block.t, block.acc, gyr), rate)
    strides = np.floor(ic / STRIDE_S)
    assert ic.size >= 20
    assert np.unique(strides).size == ic.size  # one contact per stride
    assert np.all(np.abs((ic / STRIDE_S) % 1.0 - 0.75) <= 0.03)


def test_outlier_peak_does_not_lock_out_later_swings() -> None:
    """One huge spike in a swing (accepted as its peak) must not raise the bar for ever."""
    rate = 100.0
    block = synthetic_shank(rate, seconds=20.0)
    axis = np.array([0.3, 0.9, -0.2]) / np.linalg.norm([0.3, 0.9, -0.2])
    gyr = block.gyr.copy()
    spike_at = round((4 * STRIDE_S + 0.55 * STRIDE_S) * rate)  # mid-swing of stride 4
    gyr[spike_at : spike_at + 2] += 40.0 * axis
    ic = _ic_times(SampleBlock(block.location, block.t, block.acc, gyr), rate)
    assert np.sum(ic > 8.0) >= 14  # every stride after the spike is still found


def test_axis_waits_for_gait_before_its_sign() -> None:
    """Standing, then one atypical first step: no sign yet; after a few strides, the right one."""
    rate = 100.0
    gait = synthetic_shank(rate, seconds=10.0)
    axis = np.array([0.3, 0.9, -0.2]) / np.linalg.norm([0.3, 0.9, -0.2])
    still = np.zeros((300, 3))  # 3 s standing
    first = np.zeros((60, 3))  # gait initiation: a backward lurch larger than its swing
    first[10:40] = (-4.0 * np.sin(np.linspace(0, np.pi, 30)))[:, None] * axis
    first[40:55] = (2.0 * np.sin(np.linspace(0, np.pi, 15)))[:, None] * axis
    est = SagittalAxisEstimator(rate, "shank")
    out = est.update(np.vstack((still, first)))
    assert np.isnan(out).all()
    est.update(gait.gyr[:500])  # type: ignore[index]
    found = est.axis
    assert found is not None and float(found @ axis) > 0.99
