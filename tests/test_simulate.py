"""The synthetic runner: physics sanity, truth definitions, imperfections, determinism."""

from __future__ import annotations

import csv
import filecmp
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from coach.sources.csv_folder import read_session
from coach.sources.simulate import (
    ScenarioStep,
    SimulatedRun,
    SimulationParams,
    format_scenario,
    parse_scenario,
    simulate,
    write_simulated_session,
)
from coach.types import EventKind, Location, Side

CLEAN = SimulationParams(duration_s=20.0, noise="none", seed=3)


@pytest.fixture(scope="module")
def clean_run() -> SimulatedRun:
    return simulate(CLEAN)


def _rotation(
    obliquity_deg: np.ndarray, rotation_deg: np.ndarray, tilt_deg: np.ndarray
) -> np.ndarray:
    """R = Rz(rotation) Rx(-obliquity) Ry(tilt), (n, 3, 3)."""
    z, x, y = np.radians(rotation_deg), -np.radians(obliquity_deg), np.radians(tilt_deg)
    out = np.empty((z.size, 3, 3))
    for i in range(z.size):
        cz, sz, cx, sx, cy, sy = (
            np.cos(z[i]),
            np.sin(z[i]),
            np.cos(x[i]),
            np.sin(x[i]),
            np.cos(y[i]),
            np.sin(y[i]),
        )
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        out[i] = rz @ rx @ ry
    return out


def test_standing_specific_force_is_gravity() -> None:
    run = simulate(replace(CLEAN, duration_s=8.0, standing_s=4.0))
    for block in run.blocks.values():
        still = block.t < 3.5
        norm = np.linalg.norm(block.acc[still], axis=1)
        assert np.allclose(norm, 9.81, atol=0.01)
        assert np.allclose(block.gyr[still], 0.0, atol=1e-6)
        assert np.allclose(block.acc[still].mean(axis=0), [0.0, 0.0, 9.81], atol=0.01)
    # truth starts half-way through the 1-s start-up: the contacts of the ramp are in it
    assert all(e.t >= 4.5 for e in run.events)
    assert any(e.t < 5.0 and e.kind is EventKind.INITIAL_CONTACT for e in run.events)
    gy = run.blocks[Location.RIGHT_SHANK].gyr[:, 1]
    t = run.blocks[Location.RIGHT_SHANK].t
    first_right_ic = min(
        e.t for e in run.events if e.kind is EventKind.INITIAL_CONTACT and e.side is Side.RIGHT
    )
    # that contact follows a real swing; no swing of that size before the truth starts
    assert gy[(t > first_right_ic - 0.3) & (t < first_right_ic)].min() < -4.0
    assert gy[t < 4.3].min() > -1.0


def test_gyro_integrates_to_the_pelvis_orientation(clean_run: SimulatedRun) -> None:
    block = clean_run.blocks[Location.PELVIS]
    angles = clean_run.pelvis_angles
    start = int(np.searchsorted(block.t, 5.0))
    stop = start + 3 * 200  # 3 s
    truth = _rotation(angles.obliquity_deg, angles.rotation_deg, angles.tilt_deg)
    orientation = truth[start].copy()
    dt = 1.0 / 200.0
    worst = 0.0
    for i in range(start, stop):
        omega = 0.5 * (block.gyr[i] + block.gyr[i + 1]) * dt
        angle = np.linalg.norm(omega)
        k = np.array([[0, -omega[2], omega[1]], [omega[2], 0, -omega[0]], [-omega[1], omega[0], 0]])
        k = k / angle
        orientation = orientation @ (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k)
        error = orientation.T @ truth[i + 1]
        worst = max(worst, np.degrees(np.arccos(np.clip((np.trace(error) - 1) / 2, -1, 1))))
    assert worst < 0.5


def test_shank_gyro_has_the_running_pattern(clean_run: SimulatedRun) -> None:
    gy = clean_run.blocks[Location.RIGHT_SHANK].gyr[:, 1]
    assert -12.0 < gy.min() < -7.0  # mid-swing forward swing of the foot (-y in body frame)
    ics = [
        e.t
        for e in clean_run.events
        if e.kind is EventKind.INITIAL_CONTACT and e.side is Side.RIGHT
    ]
    t = clean_run.blocks[Location.RIGHT_SHANK].t
    for ic in ics[1:-1]:
        before = (t > ic - 0.25) & (t < ic)
        # the swing peak comes in the last quarter second before contact
        assert gy[before].min() < -5.0


def test_events_alternate_at_the_requested_cadence(clean_run: SimulatedRun) -> None:
    contacts = [e for e in clean_run.events if e.kind is EventKind.INITIAL_CONTACT]
    sides = [e.side for e in contacts]
    assert all(a is not b for a, b in itertools.pairwise(sides))
    cadence = 60.0 / np.diff([e.t for e in contacts]).mean()
    assert cadence == pytest.approx(170.0, abs=3.0)
    for stride in clean_run.strides:
        assert 200.0 < stride.contact_time_ms < 300.0
        assert stride.flight_time_ms is not None and stride.flight_time_ms > 0.0
        assert stride.vertical_oscillation_cm is not None
        assert 5.0 < stride.vertical_oscillation_cm < 10.0
        assert all(e.t_detected == e.t for e in clean_run.events)


@pytest.mark.parametrize(("drop", "rotation"), [(3.0, 8.0), (8.0, 14.0)])
def test_truth_drop_and_rotation_match_the_request(drop: float, rotation: float) -> None:
    run = simulate(replace(CLEAN, pelvic_drop_deg=drop, pelvic_rotation_deg=rotation))
    drops = [s.pelvic_drop_deg for s in run.strides]
    rotations = [s.pelvic_rotation_deg for s in run.strides]
    assert np.mean(drops) == pytest.approx(drop, rel=0.05)
    assert np.mean(rotations) == pytest.approx(rotation, rel=0.05)
    obliquity = run.pelvis_angles.obliquity_deg
    assert 1.8 * drop < np.ptp(obliquity[run.pelvis_angles.t > 2]) < 3.5 * drop


def test_drop_truth_follows_the_definition(clean_run: SimulatedRun) -> None:
    """Recompute the drop from the written angle trajectory with design.md's definition."""
    angles = clean_run.pelvis_angles
    toe_offs = {
        (e.side, round(e.t, 9)): e.t for e in clean_run.events if e.kind is EventKind.TOE_OFF
    }
    assert toe_offs
    for stride in clean_run.strides[:20]:
        to = stride.t + stride.contact_time_ms / 1000.0
        inside = (angles.t >= stride.t) & (angles.t <= to)
        at_ic = np.interp(stride.t, angles.t, angles.obliquity_deg)
        sign = 1.0 if stride.side is Side.RIGHT else -1.0
        drop = np.max(sign * (angles.obliquity_deg[inside] - at_ic))
        assert drop == pytest.approx(stride.pelvic_drop_deg, abs=0.1)
        assert drop > 0


def test_random_mount_changes_signals_not_truth(clean_run: SimulatedRun) -> None:
    mounted = simulate(replace(CLEAN, mount="random"))
    assert mounted.events == clean_run.events
    assert mounted.strides == clean_run.strides
    np.testing.assert_array_equal(
        mounted.pelvis_angles.obliquity_deg, clean_run.pelvis_angles.obliquity_deg
    )
    for location, block in mounted.blocks.items():
        nominal = clean_run.blocks[location]
        assert not np.allclose(block.acc, nominal.acc, atol=0.5)
        mount = mounted.mounts[location]
        np.testing.assert_allclose(mount @ mount.T, np.eye(3), atol=1e-12)
        # rotating back to the segment frame recovers the nominal signals
        np.testing.assert_allclose(block.acc @ mount.T, nominal.acc, atol=1e-6)
        np.testing.assert_allclose(block.gyr @ mount.T, nominal.gyr, atol=1e-6)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    params = replace(
        CLEAN,
        duration_s=6.0,
        noise="realistic",
        packet_loss=0.05,
        mount="tilted",
        clock_drift_ppm=40.0,
    )
    for name in ("a", "b"):
        write_simulated_session(simulate(params), tmp_path / name, {"notes": "determinism"})
    compare = filecmp.dircmp(tmp_path / "a", tmp_path / "b")
    assert not compare.diff_files and not compare.left_only and not compare.right_only
    truth = filecmp.dircmp(tmp_path / "a" / "truth", tmp_path / "b" / "truth")
    assert sorted(truth.same_files) == [
        "events.csv",
        "pelvis_angles.csv",
        "strides.csv",
        "truth_meta.toml",
    ]
    other = simulate(replace(params, seed=params.seed + 1))
    write_simulated_session(other, tmp_path / "c", {})
    assert not filecmp.cmp(
        tmp_path / "a" / "pelvis.csv", tmp_path / "c" / "pelvis.csv", shallow=False
    )


def test_written_session_reads_back(tmp_path: Path, clean_run: SimulatedRun) -> None:
    write_simulated_session(clean_run, tmp_path, {"notes": "x"})
    session = read_session(tmp_path)
    assert set(session.blocks) == set(clean_run.blocks)
    np.testing.assert_allclose(
        session.blocks[Location.PELVIS].acc, clean_run.blocks[Location.PELVIS].acc, atol=1e-6
    )
    assert session.meta["notes"] == "x"
    with open(tmp_path / "truth" / "events.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(clean_run.events)
    assert set(rows[0]) == {"t", "kind", "side"}
    with open(tmp_path / "truth" / "strides.csv", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert header[:7] == [
        "t",
        "side",
        "contact_time_ms",
        "flight_time_ms",
        "cadence_spm",
        "pelvic_drop_deg",
        "pelvic_rotation_deg",
    ]


def test_packet_loss_gives_gaps() -> None:
    run = simulate(replace(CLEAN, duration_s=30.0, packet_loss=0.05, samples_per_packet=4))
    for location, block in run.blocks.items():
        dt = np.diff(block.t)
        assert np.all(dt > 0)
        gaps = dt > 1.5 / 200.0
        assert gaps.sum() > 10
        assert np.all(np.isclose(dt[gaps] * 200.0 % 4, 1.0, atol=1e-6))  # whole packets lost
        lost = run.sensors[location].samples_dropped / (
            len(block) + run.sensors[location].samples_dropped
        )
        assert lost == pytest.approx(0.05, abs=0.01)


def test_clock_drift_offsets_and_rates() -> None:
    run = simulate(replace(CLEAN, duration_s=20.0, clock_drift_ppm=100.0))
    rates = []
    for location, block in run.blocks.items():
        sensor = run.sensors[location]
        assert 0.0 <= block.t[0] < 0.005
        assert block.t[0] == sensor.start_offset_s
        rate = (len(block) - 1) / (block.t[-1] - block.t[0])
        assert rate == pytest.approx(200.0 * (1 + sensor.clock_ppm * 1e-6), rel=1e-9)
        assert abs(sensor.clock_ppm) <= 100.0
        rates.append(rate)
    assert len(set(rates)) == len(rates)


def test_noise_quantises_and_saturates() -> None:
    run = simulate(
        replace(CLEAN, duration_s=10.0, noise="realistic", speed_mps=7.5, cadence_spm=200)
    )
    lsb_acc = 16 * 9.80665 / 32768
    block = run.blocks[Location.RIGHT_SHANK]
    counts = block.acc / lsb_acc
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    assert block.acc.max() <= 16 * 9.80665 and block.acc.min() >= -16 * 9.80665
    assert np.abs(block.gyr).max() <= np.radians(2000.0) + 1e-9


def test_scenario_onset_visible_in_truth() -> None:
    params = replace(
        CLEAN,
        duration_s=40.0,
        scenario=parse_scenario("pelvic_drop_deg=4->9@20s,cadence_spm=170->160@20s..30s"),
    )
    run = simulate(params)
    before = [s for s in run.strides if s.t < 19.5]
    after = [s for s in run.strides if s.t > 20.5]
    assert np.mean([s.pelvic_drop_deg for s in before]) == pytest.approx(4.0, rel=0.08)
    assert np.mean([s.pelvic_drop_deg for s in after]) == pytest.approx(9.0, rel=0.08)
    late = [s.cadence_spm for s in run.strides if s.t > 31.0]
    assert np.mean(late) == pytest.approx(160.0, abs=3.0)


def test_walk_break_walks() -> None:
    run = simulate(replace(CLEAN, duration_s=40.0, walk_breaks=((15.0, 28.0),)))
    walking = [s for s in run.strides if 17.0 < s.t < 27.0]
    assert walking
    for s in walking:
        assert s.cadence_spm == pytest.approx(110.0, abs=8.0)
        assert s.flight_time_ms is not None and s.flight_time_ms < 0.0  # double support
    t = run.blocks[Location.LEFT_SHANK].t
    gy = run.blocks[Location.LEFT_SHANK].gyr[:, 1]
    assert -7.0 < gy[(t > 17) & (t < 27)].min() < -3.5


def test_asymmetry_biases_right_over_left() -> None:
    run = simulate(replace(CLEAN, asymmetry=0.2))
    right = [s.pelvic_drop_deg for s in run.strides if s.side is Side.RIGHT]
    left = [s.pelvic_drop_deg for s in run.strides if s.side is Side.LEFT]
    assert np.mean(right) / np.mean(left) == pytest.approx(1.1 / 0.9, rel=0.05)


def test_impact_transient_on_the_shank(clean_run: SimulatedRun) -> None:
    block = clean_run.blocks[Location.LEFT_SHANK]
    ics = [
        e.t for e in clean_run.events if e.kind is EventKind.INITIAL_CONTACT and e.side is Side.LEFT
    ]
    peaks = []
    for ic in ics:
        window = (block.t >= ic) & (block.t < ic + 0.03)
        peaks.append(np.linalg.norm(block.acc[window], axis=1).max())
    assert np.median(peaks) > 25.0


def test_overground_runs_and_heading_does_not_change_truth(clean_run: SimulatedRun) -> None:
    run = simulate(replace(CLEAN, overground=True))
    assert run.strides == clean_run.strides
    assert not np.allclose(run.blocks[Location.PELVIS].acc, clean_run.blocks[Location.PELVIS].acc)


def test_parse_scenario_round_trip_and_errors() -> None:
    steps = parse_scenario("pelvic_drop_deg=5->10@120s, cadence_spm=160@120s..600s")
    assert steps == (
        ScenarioStep("pelvic_drop_deg", 10.0, 120.0, 120.0, 5.0),
        ScenarioStep("cadence_spm", 160.0, 120.0, 600.0, None),
    )
    assert parse_scenario(format_scenario(steps)) == steps
    with pytest.raises(ValueError, match="not one of"):
        parse_scenario("knee_angle=3@1s")
    with pytest.raises(ValueError, match="name="):
        parse_scenario("pelvic_drop_deg=5")


def test_params_value_at_follows_the_scenario() -> None:
    params = SimulationParams(
        scenario=parse_scenario("cadence_spm=172->160@100s..200s,pelvic_drop_deg=8@50s")
    )
    assert params.value_at("cadence_spm", 50.0) == 172.0
    assert params.value_at("cadence_spm", 150.0) == pytest.approx(166.0)
    assert params.value_at("cadence_spm", 300.0) == 160.0
    assert params.value_at("pelvic_drop_deg", 49.0) == 5.0
    assert params.value_at("pelvic_drop_deg", 51.0) == 8.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_hz", 5.0),
        ("speed_mps", -1.0),
        ("packet_loss", 0.9),
        ("mount", "sideways"),
        ("noise", "loud"),
        ("sensors", ()),
    ],
)
def test_invalid_params_raise_clear_errors(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        SimulationParams(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [50.0, 100.0, 500.0])
def test_other_sample_rates(rate: float) -> None:
    run = simulate(replace(CLEAN, duration_s=8.0, rate_hz=rate))
    block = run.blocks[Location.PELVIS]
    assert np.diff(block.t) == pytest.approx(1.0 / rate)
    assert len(run.pelvis_angles.t) == len(block)


@pytest.mark.parametrize("duty", [0.2, 0.3, 0.38, 0.45, 0.62, 0.8])
def test_stride_warp_is_smooth_and_monotone(duty: float) -> None:
    from coach.sources.sim_kinematics import _warp

    psi = np.linspace(0.0, 1.0, 20001)
    for template_duty in (0.38, 0.62):
        phase = _warp(psi, np.full_like(psi, duty), template_duty)
        rate = np.diff(phase) / np.diff(psi)
        assert rate.min() > 0.0
        assert np.interp(duty, psi, phase) == pytest.approx(template_duty, abs=1e-9)
        assert rate[0] == pytest.approx(1.0, abs=1e-2)  # unit rate at contact: no jump of the
        assert rate[-1] == pytest.approx(1.0, abs=1e-2)  # angular velocity between strides
        assert np.abs(np.diff(rate)).max() < 2e-2  # continuous at toe-off too
