"""The synthetic runner: sensor data with exact ground truth (design.md section 8).

Segment motion first (:mod:`coach.sources.sim_kinematics` over the step timeline of
:mod:`coach.sources.sim_gait`), then what each sensor measures
(:mod:`coach.sources.sim_sensors`), then the truth from the same trajectories
(:mod:`coach.sources.sim_truth`). The model, its limits and the truth definitions are in
``docs/simulator.md``.

Example::

    run = simulate(SimulationParams(duration_s=120, pelvic_drop_deg=7, noise="realistic"))
    write_simulated_session(run, Path("out/sim1"), {"notes": "drop 7"})
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from coach.sources.csv_folder import CsvSession, write_session
from coach.sources.sim_gait import GaitTimeline, build_timeline
from coach.sources.sim_kinematics import HeadingPath, RunnerKinematics
from coach.sources.sim_params import (
    SCENARIO_PARAMETERS,
    ScenarioStep,
    SimulationParams,
    parse_scenario,
)
from coach.sources.sim_sensors import (
    NOISE_MODELS,
    ContactTransient,
    anti_alias_and_sample,
    apply_imperfections,
    packet_loss_mask,
    random_mount,
    rigid_imu,
    sample_times,
    time_since_last,
)
from coach.sources.sim_truth import (
    PelvisAngleTruth,
    truth_events,
    truth_pelvis_angles,
    truth_strides,
)
from coach.types import LOCATIONS, FloatArray, GaitEvent, Location, SampleBlock, Side, Stride

__all__ = [
    "SCENARIO_PARAMETERS",
    "PelvisAngleTruth",
    "ScenarioStep",
    "SensorTruth",
    "SimulatedRun",
    "SimulationParams",
    "format_scenario",
    "parse_scenario",
    "simulate",
    "write_simulated_session",
]

CHUNK_S = 20.0
MAX_START_OFFSET_S = 0.005


@dataclass(frozen=True)
class SensorTruth:
    """Hidden properties of one simulated sensor.

    Attributes:
        clock_ppm: its sample clock runs at rate·(1 + clock_ppm·1e-6).
        start_offset_s: session time of its first sample, s.
        gyro_bias: constant part of the gyro bias, rad/s, sensor frame (random walk on top).
        samples_dropped: samples lost to packet loss.

    """

    clock_ppm: float
    start_offset_s: float
    gyro_bias: FloatArray
    samples_dropped: int


@dataclass(frozen=True)
class SimulatedRun:
    """A simulated session and its truth.

    Attributes:
        blocks: what each sensor measured; ``t`` are the true sample times on the session time
            base (gaps where packets were lost).
        events: truth initial contacts and toe-offs with sides (``t_detected = t``).
        strides: truth per stance (design.md section 3 definitions, see sim_truth).
        pelvis_angles: truth pelvic angles at ``i / rate_hz``.
        mounts: sensor-to-segment rotation M per sensor (v_segment = M · v_sensor).
        sensors: hidden clock, bias and loss figures per sensor.
        params: what was simulated.

    """

    blocks: dict[Location, SampleBlock]
    events: list[GaitEvent]
    strides: list[Stride]
    pelvis_angles: PelvisAngleTruth
    mounts: dict[Location, FloatArray]
    sensors: dict[Location, SensorTruth]
    params: SimulationParams


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def simulate(params: SimulationParams) -> SimulatedRun:
    """Simulate a run: sensor blocks and truth. The same params (seed) give the same output."""
    gait = build_timeline(params, _rng(params.seed, 1))
    heading = (
        HeadingPath.wandering(_rng(params.seed, 2)) if params.overground else HeadingPath.fixed()
    )
    kinematics = RunnerKinematics(gait, heading, treadmill=not params.overground)
    contact_scale = _contact_scale(gait, _rng(params.seed, 3))
    locations = [Location(s) for s in params.sensors]
    mounts: dict[Location, FloatArray] = {}
    clocks: dict[Location, tuple[float, float]] = {}
    transients: dict[Location, tuple[ContactTransient, ContactTransient, float, float]] = {}
    times: dict[Location, FloatArray] = {}
    for location in locations:
        index = LOCATIONS.index(location.value)
        mounts[location] = random_mount(params.mount, _rng(params.seed, 100, index))
        clocks[location] = _clock(params, _rng(params.seed, 200, index))
        transients[location] = _transients(location, _rng(params.seed, 300, index))
        times[location] = sample_times(params.duration_s, params.rate_hz, *clocks[location])
    measured = _measure(params, gait, kinematics, contact_scale, mounts, transients, times)
    blocks: dict[Location, SampleBlock] = {}
    sensors: dict[Location, SensorTruth] = {}
    model = NOISE_MODELS[params.noise]
    for location in locations:
        index = LOCATIONS.index(location.value)
        acc, gyro, bias = apply_imperfections(
            measured[location][:, :3],
            measured[location][:, 3:],
            params.rate_hz,
            model,
            _rng(params.seed, 400, index),
        )
        keep = packet_loss_mask(
            acc.shape[0],
            params.packet_loss,
            params.samples_per_packet,
            _rng(params.seed, 500, index),
        )
        t = times[location]
        blocks[location] = SampleBlock(
            location,
            np.ascontiguousarray(t[keep]),
            np.ascontiguousarray(acc[keep]),
            np.ascontiguousarray(gyro[keep]),
        )
        sensors[location] = SensorTruth(*clocks[location], bias, int((~keep).sum()))
    return SimulatedRun(
        blocks=blocks,
        events=truth_events(gait, params.duration_s),
        strides=truth_strides(kinematics, gait, params.duration_s),
        pelvis_angles=truth_pelvis_angles(kinematics, params.duration_s, params.rate_hz),
        mounts=mounts,
        sensors=sensors,
        params=params,
    )


def _clock(params: SimulationParams, rng: np.random.Generator) -> tuple[float, float]:
    if params.clock_drift_ppm <= 0.0:
        return 0.0, 0.0
    ppm = float(rng.uniform(-params.clock_drift_ppm, params.clock_drift_ppm))
    return ppm, float(rng.uniform(0.0, MAX_START_OFFSET_S))


def _contact_scale(gait: GaitTimeline, rng: np.random.Generator) -> FloatArray:
    """Per-contact size of impact and wobble: ∝ speed^1.5 running, small walking, ±20 %."""
    running = (gait.speed_mps / 3.0) ** 1.5
    scale = np.where(gait.walking > 0.5, 0.2, running) * (
        1.0 + 0.2 * rng.standard_normal(gait.ic.size)
    )
    return np.maximum(scale, 0.0) * gait.envelope(gait.ic)


def _transients(
    location: Location, rng: np.random.Generator
) -> tuple[ContactTransient, ContactTransient, float, float]:
    """(impact, wobble, impact peak m/s² at scale 1, wobble peak m/s² at scale 1)."""
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    wobble = ContactTransient(float(rng.uniform(10.0, 20.0)), 0.04, direction)
    if location is Location.PELVIS:
        impact = ContactTransient(25.0, 0.010, np.array([-0.3, 0.0, 1.0]))
        return impact, wobble, 8.0, 2.5
    impact = ContactTransient(40.0, 0.007, np.array([-0.5, 0.0, 1.0]))
    return impact, wobble, 40.0, 4.0


def _measure(
    params: SimulationParams,
    gait: GaitTimeline,
    kinematics: RunnerKinematics,
    contact_scale: FloatArray,
    mounts: dict[Location, FloatArray],
    transients: dict[Location, tuple[ContactTransient, ContactTransient, float, float]],
    times: dict[Location, FloatArray],
) -> dict[Location, FloatArray]:
    """Ideal (noise-free) acc and gyro, (n, 6), at each sensor's sample times, chunk by chunk."""
    fs = float(max(1000, int(np.ceil(5 * params.rate_hz))))
    margin = max(0.5, 8.0 / (0.4 * params.rate_hz))
    out: dict[Location, list[FloatArray]] = {loc: [] for loc in times}
    start = 0.0
    while start < params.duration_s:
        end = min(start + CHUNK_S, params.duration_s)
        i0 = int(np.floor((start - margin) * fs)) - 1
        i1 = int(np.ceil((end + margin) * fs)) + 1
        t_grid = np.arange(i0, i1 + 1) / fs
        mean_position = _mean_position(kinematics, t_grid, 1.0 / fs)
        pelvis, angles = kinematics.pelvis_pose(t_grid, mean_position)
        for location, t_all in times.items():
            inside = t_all[(t_all >= start) & (t_all < end)]
            if location is Location.PELVIS:
                pose = pelvis
                contacts, side_scale = gait.ic, contact_scale
            else:
                side = location.side
                pose = kinematics.shank_pose(t_grid, side, pelvis, angles)
                on_side = gait.right if side is Side.RIGHT else ~gait.right
                contacts, side_scale = gait.ic[on_side], contact_scale[on_side]
            specific, gyro = rigid_imu(pose.rotation, pose.position, 1.0 / fs)
            t_inner = t_grid[1:-1]
            since, which = time_since_last(contacts, t_inner)
            impact, wobble, impact_peak, wobble_peak = transients[location]
            amplitude = side_scale[which] if contacts.size else np.zeros_like(t_inner)
            specific = specific + impact.evaluate(since, impact_peak * amplitude)
            specific = specific + wobble.evaluate(since, wobble_peak * amplitude)
            mount = mounts[location]
            signals = np.hstack([specific @ mount, gyro @ mount])
            out[location].append(anti_alias_and_sample(t_inner, signals, params.rate_hz, inside))
        start = end
    return {loc: np.vstack(parts) for loc, parts in out.items()}


def _mean_position(kinematics: RunnerKinematics, t: FloatArray, step_s: float) -> FloatArray:
    """Progression of the body along its heading (zero on a treadmill), m, relative to t[0]."""
    position = np.zeros((t.size, 3))
    if kinematics.treadmill:
        return position
    speed = kinematics.gait.speed(t)
    heading = kinematics.heading(t)
    position[:, 0] = np.cumsum(speed * np.cos(heading)) * step_s
    position[:, 1] = np.cumsum(speed * np.sin(heading)) * step_s
    return position


def format_scenario(steps: tuple[ScenarioStep, ...]) -> str:
    """The text form that :func:`parse_scenario` reads."""
    parts = []
    for s in steps:
        start = "" if s.start_value is None else f"{s.start_value:g}->"
        span = f"{s.t_start_s:g}s" + ("" if s.t_end_s == s.t_start_s else f"..{s.t_end_s:g}s")
        parts.append(f"{s.parameter}={start}{s.end_value:g}@{span}")
    return ",".join(parts)


def _params_table(params: SimulationParams) -> dict[str, Any]:
    table = asdict(params)
    table["sensors"] = [Location(s).value for s in params.sensors]
    table["scenario"] = format_scenario(params.scenario)
    table["walk_breaks"] = [list(b) for b in params.walk_breaks]
    return table


def write_simulated_session(
    run: SimulatedRun, out_dir: Path, meta: dict[str, Any] | None = None
) -> None:
    """Write the CSV session folder and ``truth/`` (events, strides, pelvis angles, meta).

    Formats are those of ``../shared/data/truth/*``; the same run gives the same bytes.
    """
    out_dir = Path(out_dir)
    session_meta = {
        "source": "coach synthetic runner (coach.sources.simulate)",
        "activity": "walking and running" if run.params.walk_breaks else "running",
        "speed_mps": run.params.speed_mps,
        "sample_rate_hz": run.params.rate_hz,
        **(meta or {}),
    }
    write_session(out_dir, CsvSession(dict(run.blocks), session_meta))
    truth = out_dir / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    with open(truth / "events.csv", "w", encoding="utf-8") as f:
        f.write("t,kind,side\n")
        f.writelines(f"{e.t:.6f},{e.kind.value},{e.side.value}\n" for e in run.events)
    columns = (
        "contact_time_ms",
        "flight_time_ms",
        "cadence_spm",
        "pelvic_drop_deg",
        "pelvic_rotation_deg",
        "vertical_oscillation_cm",
        "braking_mps",
    )
    with open(truth / "strides.csv", "w", encoding="utf-8") as f:
        f.write("t,side," + ",".join(columns) + "\n")
        for s in run.strides:
            values = ",".join(_cell(getattr(s, c)) for c in columns)
            f.write(f"{s.t:.6f},{s.side.value},{values}\n")
    angles = run.pelvis_angles
    table = np.column_stack([angles.t, angles.obliquity_deg, angles.rotation_deg, angles.tilt_deg])
    with open(truth / "pelvis_angles.csv", "w", encoding="utf-8") as f:
        f.write("t,obliquity_deg,rotation_deg,tilt_deg\n")
        np.savetxt(f, table, delimiter=",", fmt=["%.6f", "%.4f", "%.4f", "%.4f"])
    (truth / "truth_meta.toml").write_text(tomli_w.dumps(_truth_meta(run)), encoding="utf-8")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _truth_meta(run: SimulatedRun) -> dict[str, Any]:
    sensors = {
        location.value: {
            "R_mount_sensor_to_segment": np.round(run.mounts[location], 6).tolist(),
            "clock_ppm": round(truth.clock_ppm, 4),
            "start_offset_s": round(truth.start_offset_s, 9),
            "gyro_bias_rad_s": np.round(truth.gyro_bias, 6).tolist(),
            "samples_dropped": truth.samples_dropped,
        }
        for location, truth in run.sensors.items()
    }
    return {
        "source_of_truth": "coach synthetic runner: exact, from the simulated trajectories",
        "events_source": "simulation",
        "n_initial_contact": sum(e.kind.value == "initial_contact" for e in run.events),
        "n_toe_off": sum(e.kind.value == "toe_off" for e in run.events),
        "time_base": "session time, s; sensor t columns are the true sample times",
        "angle_convention": (
            "R_pelvis = H(heading) Rz(rotation) Rx(-obliquity) Ry(tilt) (Cardan Z-X'-Y'', "
            "Baker 2001), relative to the direction of travel; zero = standing posture"
        ),
        "sign_convention": (
            "obliquity > 0: RIGHT side higher; rotation > 0: pelvis turned LEFT; tilt > 0: anterior"
        ),
        "definitions": (
            "design.md section 3; flight_time_ms < 0 while walking (minus the double support); "
            "see docs/simulator.md"
        ),
        "synthetic_sensor_convention": (
            "v_segment = R_mount @ v_sensor; segment frames x forward, y left, z up; "
            "specific force = R_sensor^T (a - g), g = (0, 0, -9.81)"
        ),
        "parameters": _params_table(run.params),
        "sensors": sensors,
    }
