from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coach.cli import main
from coach.errors import SessionFormatError
from coach.sources.csv_folder import CsvSession, read_session, write_session
from coach.sources.replay import iter_blocks, summarize_block
from coach.types import Location, SampleBlock


def _session(rng: np.random.Generator, n: int = 500) -> CsvSession:
    t = np.arange(n) / 200.0
    pelvis = SampleBlock(Location.PELVIS, t, rng.normal(0, 3, (n, 3)), rng.normal(0, 1, (n, 3)))
    shank = SampleBlock(Location.LEFT_SHANK, t + 0.001, rng.normal(0, 3, (n, 3)), None)
    return CsvSession({Location.PELVIS: pelvis, Location.LEFT_SHANK: shank}, {"source": "test"})


def test_round_trip(tmp_path: Path) -> None:
    original = _session(np.random.default_rng(1))
    write_session(tmp_path, original)
    back = read_session(tmp_path)
    assert back.meta == {"source": "test"}
    assert set(back.blocks) == set(original.blocks)
    for location, block in original.blocks.items():
        np.testing.assert_allclose(back.blocks[location].t, block.t, atol=1e-9)
        np.testing.assert_allclose(back.blocks[location].acc, block.acc, atol=1e-6)
    assert back.blocks[Location.LEFT_SHANK].gyr is None
    assert back.blocks[Location.PELVIS].gyr is not None


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


GOOD_HEADER = "t,ax,ay,az,gx,gy,gz\n"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("pelvis.csv", "t,ax,ay\n0,1,2\n", r"pelvis.csv:1: header"),
        ("pelvis.csv", GOOD_HEADER + "0,1,2,3,4,5\n", r"line 2 has 6 values"),
        ("pelvis.csv", GOOD_HEADER + "0,1,2,3,4,5,6,7\n", r"line 2 has 8 values"),
        ("pelvis.csv", GOOD_HEADER + "0,1,2,3,4,5,6\n0,1,2,3,4,5,6\n", r"pelvis.csv:3: t is not"),
        ("pelvis.csv", GOOD_HEADER + "0,1,2,3,4,5,6\n0.1,1,nan,3,4,5,6\n", r"pelvis.csv:3: .*NaN"),
        ("pelvis.csv", GOOD_HEADER + "0,1,2,3,x,5,6\n", r"line 2 has a value that is not a number"),
        ("pelvis.csv", "", r"pelvis.csv:1: header"),
        ("pelvis.csv", GOOD_HEADER, r"no samples"),
        ("knee.csv", GOOD_HEADER + "0,1,2,3,4,5,6\n", r"unknown file name\(s\) knee.csv"),
    ],
)
def test_bad_folders_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    folder = _write(tmp_path / "s", name, text)
    with pytest.raises(SessionFormatError, match=message):
        read_session(folder)


def test_missing_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SessionFormatError, match="not a folder"):
        read_session(tmp_path / "absent")
    with pytest.raises(SessionFormatError, match="no sensor CSV"):
        read_session(tmp_path)


def test_summary_counts_gaps() -> None:
    t = np.delete(np.arange(1000) / 100.0, np.r_[100:104, 500:502])
    block = SampleBlock(Location.PELVIS, t, np.zeros((t.size, 3)))
    summary = summarize_block(block)
    assert summary.rate_hz == pytest.approx(100.0)
    assert summary.gaps == 2
    assert summary.missing_samples == 6
    assert not summary.has_gyro


def test_iter_blocks_keeps_every_sample_in_time_order() -> None:
    session = _session(np.random.default_rng(2), n=1234)
    pieces = iter_blocks(session, block_s=0.3)
    ends = [float(p.t[-1]) for p in pieces]
    assert ends == sorted(ends)
    for location, block in session.blocks.items():
        joined = np.concatenate([p.t for p in pieces if p.location == location])
        np.testing.assert_array_equal(joined, block.t)


def test_cli_replay_reports_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "s", "pelvis.csv", "t,ax\n")
    assert main(["replay", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "pelvis.csv:1: header" in err and "Traceback" not in err


def test_real_recording_reads(shared_data: Path) -> None:
    session = read_session(shared_data / "sessions" / "rbds001_run2p5")
    assert set(session.blocks) == {Location.PELVIS, Location.LEFT_SHANK, Location.RIGHT_SHANK}
    assert summarize_block(session.blocks[Location.PELVIS]).rate_hz == pytest.approx(200.0)
