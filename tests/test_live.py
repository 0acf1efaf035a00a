"""Live runs end to end: emulated BLE sensors -> coach run -> contacts, recording, replay."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
import pytest

from coach.cli import main
from coach.cli_live import run_live
from coach.config import CoachConfig, load_config
from coach.live import LiveOptions, paced_replay
from coach.runtime import replay_blocks, sensor_specs
from coach.sources.csv_folder import CsvSession
from coach.sources.recorded_session import RecordedSession
from coach.sources.recording import open_recording
from coach.sources.replay import iter_blocks
from coach.sources.simulate import SimulationParams, simulate
from coach.types import EventKind, Side


def _run_args(tmp_path: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "duration_s": 24.0,
        "audio": "none",
        "record": tmp_path / "run.mcap",
        "no_record": False,
        "no_view": True,
        "connect_timeout_s": 10.0,
        "config": None,
        "emulate": True,
        "emulate_seed": 3,
        "emulate_speed": 3.0,
        "emulate_disconnect": "right_shank@12+2",
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_emulated_run_with_a_disconnect_detects_records_and_replays(tmp_path: Path) -> None:
    config = load_config()
    result = asyncio.run(asyncio.wait_for(run_live(_run_args(tmp_path), config), 60.0))
    run = result.run
    # about 170 steps/min over ~24 s, less the calibration: each side keeps stepping
    contacts = [e for e in run.events if e.kind is EventKind.INITIAL_CONTACT]
    assert len(contacts) >= 45
    assert {e.side for e in contacts} >= {Side.LEFT, Side.RIGHT}
    assert result.dropped_packets == 0
    right = result.decoder_stats["right_shank"]
    assert right["lost_samples"] > 200  # the 2 s outage is a gap, not invented data
    assert any("stale_sensor" in s.quality for s in run.strides)
    late = [s for s in run.strides if s.t > 16.0]
    assert late and all(s.cadence_spm is not None for s in late[:-1])

    recording = open_recording(tmp_path / "run.mcap")
    assert not recording.truncated
    session = RecordedSession(recording)
    replayed = replay_blocks(
        config, [spec for spec in _specs(session)], (b for _, b in session.iter_blocks(0.0))
    )
    # the replay re-decodes the same notifications: the same contacts, to the microsecond
    live_ic = sorted(round(e.t, 6) for e in contacts)
    replay_ic = sorted(
        round(e.t, 6) for e in replayed.events if e.kind is EventKind.INITIAL_CONTACT
    )
    outside_outage = [t for t in live_ic if not 11.0 < t < 16.0]
    assert set(outside_outage) <= set(replay_ic)


def _specs(session: RecordedSession) -> list:
    from coach.runtime import recorded_sensor_specs

    return recorded_sensor_specs(session)


def test_missing_required_sensor_is_reported_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "run",
            "--emulate",
            "--emulate-absent",
            "right_shank",
            "--no-record",
            "--no-view",
            "--audio",
            "none",
            "--connect-timeout-s",
            "1",
            "--duration-s",
            "5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "right_shank" in err and "required = false" in err and "Traceback" not in err


def test_optional_missing_sensor_lets_the_run_start(tmp_path: Path) -> None:
    config = load_config()
    sensors = [
        s.model_copy(update={"required": s.location != "right_shank"}) for s in config.sensors
    ]
    config = config.model_copy(update={"sensors": sensors})
    args = _run_args(
        tmp_path,
        duration_s=14.0,
        emulate_disconnect=None,
        emulate_absent=["right_shank"],
        connect_timeout_s=1.0,
    )
    result = asyncio.run(asyncio.wait_for(run_live(args, config), 60.0))
    contacts = [e for e in result.run.events if e.kind is EventKind.INITIAL_CONTACT]
    assert {e.side for e in contacts if e.t > 8.0} == {Side.LEFT, Side.RIGHT}
    assert all(
        "missing_sensor" in s.quality or "stale_sensor" in s.quality
        for s in result.run.strides
        if s.side is Side.RIGHT
    )


def test_paced_replay_gives_the_same_results_as_a_fast_one() -> None:
    run = simulate(SimulationParams(duration_s=20.0, seed=8, mount="random"))
    session = CsvSession(run.blocks)
    config = CoachConfig()
    fast = replay_blocks(config, sensor_specs(session), iter_blocks(session, 0.5))
    timed = ((float(b.t[-1]), b) for b in iter_blocks(session, 0.5))
    options = LiveOptions(audio="none", view=False)
    paced = asyncio.run(paced_replay(config, sensor_specs(session), timed, 40.0, options)).run
    assert [s.t for s in paced.strides] == [s.t for s in fast.strides]
    assert np.allclose(
        [s.cadence_spm or 0.0 for s in paced.strides], [s.cadence_spm or 0.0 for s in fast.strides]
    )
