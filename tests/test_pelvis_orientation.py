"""Pelvis mount calibration, orientation and pelvic angles (stream.mount, pelvis_orientation)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from coach.sources.csv_folder import read_session
from coach.stream.mount import MountCalibrator
from coach.stream.pelvis_orientation import PelvisAngles, PelvisTracker, cardan_zxy_deg
from coach.types import Location, SampleBlock

G = 9.80665


def _rz(a: float) -> np.ndarray:
    return Rotation.from_euler("z", a).as_matrix()


def synthetic_run(
    rate_hz: float = 100.0,
    duration_s: float = 20.0,
    mount: np.ndarray | None = None,
    step_hz: float = 2.8,
    amplitudes_deg: tuple[float, float, float] = (4.0, 6.0, 3.0),
    turn: tuple[float, float, float] | None = None,
) -> tuple[SampleBlock, dict[str, np.ndarray]]:
    """A running-like pelvis: spring-mass vertical/fore-aft acceleration with flight, and
    sinusoidal obliquity (stride freq), rotation (stride freq, quarter period later), tilt (step).

    ``mount`` maps sensor to body (v_body = mount @ v_sensor). ``turn`` = (start s, duration s,
    angle deg): the direction of travel turns smoothly (raised cosine rate) by that angle.
    Returns the block and the true angles in degrees (relative to the direction of travel).
    """
    n = int(duration_s * rate_hz)
    t = np.arange(n) / rate_hz
    w_step = 2 * np.pi * step_hz
    w_stride = w_step / 2
    obl = amplitudes_deg[0] * np.sin(w_stride * t)
    rot = amplitudes_deg[1] * np.cos(w_stride * t)
    tilt = amplitudes_deg[2] * np.sin(w_step * t + 0.5)
    heading = np.zeros(n)
    if turn is not None:
        start, length, angle = turn
        phase = np.clip((t - start) / length, 0.0, 1.0)
        heading = np.radians(angle) * (phase - np.sin(2 * np.pi * phase) / (2 * np.pi))
    travel = Rotation.from_euler("z", heading[:, None])
    body = travel * Rotation.from_euler("ZXY", np.column_stack([rot, -obl, tilt]), degrees=True)
    a_world = np.zeros((n, 3))
    a_world[:, 2] = 9.0 * np.cos(w_step * t)  # + g: specific force dips near 0 g: flight
    a_world[:, 0] = 3.0 * np.sin(w_step * t)  # braking while vertical acc rises (running)
    a_world[:, 1] = 1.5 * np.sin(w_stride * t)
    specific = body.inv().apply(travel.apply(a_world) + np.array([0.0, 0.0, G]))
    # body angular rate from finite differences of the orientation (central, body frame)
    mats = body.as_matrix()
    dmats = np.gradient(mats, 1.0 / rate_hz, axis=0)
    omega = np.einsum("nji,njk->nik", mats, dmats)
    gyr_body = np.column_stack([omega[:, 2, 1], omega[:, 0, 2], omega[:, 1, 0]])
    m = np.eye(3) if mount is None else mount
    acc = specific @ m  # v_sensor = m.T @ v_body, row-wise
    gyr = gyr_body @ m
    rng = np.random.default_rng(1)
    acc = acc + rng.normal(0, 0.05, acc.shape)
    gyr = gyr + rng.normal(0, 0.005, gyr.shape) + [0.01, -0.005, 0.008]
    block = SampleBlock(Location.PELVIS, t, acc, gyr)
    return block, {"obliquity_deg": obl, "rotation_deg": rot, "tilt_deg": tilt}


def run_blocks(tracker: PelvisTracker, block: SampleBlock, sizes: list[int]) -> PelvisAngles:
    parts, i, k = [], 0, 0
    while i < len(block):
        size = sizes[k % len(sizes)]
        parts.append(tracker.update(block.slice(i, i + size)))
        i += size
        k += 1
    return PelvisAngles(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in PelvisAngles.__slots__)
    )


def with_gap(block: SampleBlock, start_s: float, length_s: float) -> SampleBlock:
    keep = (block.t < start_s) | (block.t >= start_s + length_s)
    gyr = None if block.gyr is None else block.gyr[keep]
    return SampleBlock(block.location, block.t[keep], block.acc[keep], gyr)


_MOUNT = Rotation.from_rotvec([0.3, -0.2, 2.0]).as_matrix()
_BLOCK, _TRUTH = synthetic_run(mount=_MOUNT, duration_s=14.0)
_GAPPED = with_gap(_BLOCK, 9.0, 0.5)
_WHOLE = PelvisTracker(100.0).update(_GAPPED)


def test_cardan_signs_by_hand() -> None:
    right_up = Rotation.from_euler("x", -10, degrees=True).as_matrix()  # left (y) goes down
    turned_left = Rotation.from_euler("z", 10, degrees=True).as_matrix()
    tipped_forward = Rotation.from_euler("y", 10, degrees=True).as_matrix()  # x goes down
    assert right_up @ [0, 1, 0] @ [0, 0, 1] < 0 and tipped_forward @ [1, 0, 0] @ [0, 0, 1] < 0
    obl, rot, tilt = cardan_zxy_deg(np.stack([right_up, turned_left, tipped_forward]))
    np.testing.assert_allclose(obl, [10, 0, 0], atol=1e-9)
    np.testing.assert_allclose(rot, [0, 10, 0], atol=1e-9)
    np.testing.assert_allclose(tilt, [0, 0, 10], atol=1e-9)


def test_synthetic_angles_follow_truth_with_any_mount() -> None:
    for seed in range(3):
        mount = Rotation.random(random_state=seed).as_matrix()
        block, truth = synthetic_run(mount=mount)
        est = PelvisTracker(100.0).update(block)
        late = est.valid & (block.t > 12.0)
        assert late.sum() > 500
        for name in ("obliquity_deg", "rotation_deg", "tilt_deg"):
            e = getattr(est, name)[late]
            r = truth[name][late]
            err = (e - e.mean()) - (r - r.mean())
            assert np.sqrt(np.mean(err**2)) < 0.5, (seed, name)


def test_mount_calibrator_recovers_synthetic_mount() -> None:
    calibrator = MountCalibrator(100.0)
    estimate = calibrator.update(_BLOCK)
    assert estimate is not None and estimate.calibrated and not estimate.changed
    error = Rotation.from_matrix(estimate.rotation @ _MOUNT.T).magnitude()
    assert np.degrees(error) < 3.0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=8))
def test_chunking_invariance(sizes: list[int]) -> None:
    split = run_blocks(PelvisTracker(100.0), _GAPPED, sizes)
    for name in PelvisAngles.__slots__:
        np.testing.assert_array_equal(getattr(split, name), getattr(_WHOLE, name), err_msg=name)


def test_gap_restarts_and_recovers() -> None:
    t = _GAPPED.t
    assert _WHOLE.valid[(t > 8.5) & (t < 9.0)].all()
    assert not _WHOLE.valid[(t > 9.5) & (t < 10.0)].any()
    assert _WHOLE.valid[t > 13.6].all()
    assert np.isfinite(_WHOLE.vertical_position_m).all()


def test_no_gyro_gives_invalid_angles_but_vertical_motion() -> None:
    block = SampleBlock(Location.PELVIS, _BLOCK.t, _BLOCK.acc)
    est = PelvisTracker(100.0).update(block)
    assert not est.valid.any() and np.isnan(est.obliquity_deg).all()
    late = block.t > 8.0
    # spring-mass vertical acc 9 cos(wt): position amplitude 9 / w²
    expected = 9.0 / (2 * np.pi * 2.8) ** 2
    amplitude = (est.vertical_position_m[late].max() - est.vertical_position_m[late].min()) / 2
    assert amplitude == pytest.approx(expected, rel=0.15)


def test_u_turn_marks_rotation_invalid_but_keeps_obliquity() -> None:
    block, truth = synthetic_run(mount=_MOUNT, duration_s=30.0, turn=(14.0, 2.5, 180.0))
    est = PelvisTracker(100.0).update(block)
    t = block.t
    straight = (t > 9.0) & (t < 13.5)
    assert est.valid[straight].all() and not est.turning[straight].any()
    assert est.turning[(t > 14.8) & (t < 16.0)].all()
    assert not est.valid[est.turning].any()
    assert np.isnan(est.rotation_deg[est.turning]).all()
    assert est.obliquity_valid[(t > 9.0) & (t < 20.0)].all()  # obliquity ignores the heading
    # where rotation is reported, the heading error is bounded by the turn conditions
    # (TURN_OFFSET_DEG = 25°; without them it reached 180°)
    late = est.valid & (t > 9.0)
    assert late.sum() > 0.5 * (t > 9.0).sum()
    err = est.rotation_deg[late] - truth["rotation_deg"][late]
    assert np.max(np.abs(err - np.median(err))) < 30.0
    obl_err = est.obliquity_deg[est.turning] - truth["obliquity_deg"][est.turning]
    assert np.sqrt(np.mean((obl_err - obl_err.mean()) ** 2)) < 1.0


def test_slipped_mount_is_flagged() -> None:
    block, _ = synthetic_run(duration_s=30.0)
    slipped = Rotation.from_euler("x", 50, degrees=True).as_matrix()
    late = block.t >= 15.0
    acc, gyr = block.acc.copy(), block.gyr.copy()  # type: ignore[union-attr]
    acc[late] = acc[late] @ slipped
    gyr[late] = gyr[late] @ slipped
    est = PelvisTracker(100.0).update(SampleBlock(Location.PELVIS, block.t, acc, gyr))
    flagged = block.t[est.mount_changed]
    assert flagged.size == 1 and 15.0 < flagged[0] < 18.0
    assert est.valid[block.t > 28.0].all()


# --- real recording ----------------------------------------------------------------------------


def _benchmark():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pelvis_angles_real.py"
    spec = importlib.util.spec_from_file_location("pelvis_angles_real", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rbds_accuracy(shared_data: Path) -> None:
    result = _benchmark().evaluate(shared_data)
    assert result["first_valid_s"] < 10.0
    assert result["n_stances"] >= 50
    assert result["drop_rmse_deg"] < 0.6
    assert result["rotation_rmse_deg"] < 1.0
    assert result["obliquity_rmse_demeaned_deg"] < 0.8
    assert result["tilt_rmse_demeaned_deg"] < 0.8


def test_rbds_extra_mount_rotation_barely_changes_angles(shared_data: Path) -> None:
    pelvis = read_session(shared_data / "sessions" / "rbds001_run2p5").blocks[Location.PELVIS]
    reference = PelvisTracker(200.0).update(pelvis)
    for seed in (3, 4):
        extra = Rotation.random(random_state=seed).as_matrix()
        rotated = SampleBlock(
            Location.PELVIS,
            pelvis.t,
            pelvis.acc @ extra.T,
            None if pelvis.gyr is None else pelvis.gyr @ extra.T,
        )
        est = PelvisTracker(200.0).update(rotated)
        both = est.valid & reference.valid
        assert both.sum() > 0.6 * both.size
        for name in ("obliquity_deg", "tilt_deg", "rotation_deg"):
            diff = getattr(est, name)[both] - getattr(reference, name)[both]
            assert np.sqrt(np.mean((diff - diff.mean()) ** 2)) < 0.2, (seed, name)
            assert abs(diff.mean()) < 1.0, (seed, name)
