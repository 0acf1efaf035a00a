"""Firmware profiles: bundled files validate; bad files raise ProfileError naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from coach.config import SensorConfig
from coach.errors import ProfileError
from coach.profiles import (
    STANDARD_GRAVITY,
    available_profiles,
    describe_profiles,
    load_profile,
)

EXPECTED = {"coach-sim", "witmotion-wt901ble", "thingy52", "movella-dot", "movesense-imu6"}


def test_bundled_profiles_load() -> None:
    names = set(available_profiles())
    assert names >= EXPECTED
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.rates.default_hz in profile.rates.supported_hz
        assert np.allclose(profile.mount, np.eye(3))
        assert profile.has_gyro == ("gyr" in profile.measures)


def test_config_default_profile_exists() -> None:
    default = SensorConfig(location="pelvis").profile
    assert default in available_profiles()


def test_describe_profiles_rows() -> None:
    rows = describe_profiles()
    assert {r["name"] for r in rows} >= EXPECTED
    for row in rows:
        assert set(row) == {"name", "device", "rates", "measures", "timestamp"}
        assert not row["device"].startswith("INVALID")


def test_scale_factors_to_si() -> None:
    wit = load_profile("witmotion-wt901ble").packet
    assert wit.acc.si_scale == pytest.approx(16 / 32768 * STANDARD_GRAVITY)
    assert wit.gyr is not None
    assert wit.gyr.si_scale == pytest.approx(2000 / 32768 * math.pi / 180)
    thingy = load_profile("thingy52").packet
    assert thingy.acc.si_scale == pytest.approx(STANDARD_GRAVITY / 1024)
    assert thingy.gyr is not None
    assert thingy.gyr.si_scale == pytest.approx(math.radians(1 / 32))


def test_command_bytes_resolved_per_rate() -> None:
    wit = load_profile("witmotion-wt901ble")
    steps = wit.steps("configure", 200)
    assert steps[-1].data == bytes.fromhex("ffaa030b00")
    assert steps[-1].uuid == "0000ffe9-0000-1000-8000-00805f9a34fb"
    ms = load_profile("movesense-imu6")
    start = ms.steps("start")
    assert start[0].op == "notify"
    assert start[1].data == b"\x01\x63/Meas/IMU6/104"
    assert ms.steps("stop")[0].data == b"\x02\x63"
    dot = load_profile("movella-dot")
    assert [s.op for s in dot.steps("start")] == ["notify", "write"]
    assert dot.steps("start")[1].data == b"\x01\x01\x15"
    thingy = load_profile("thingy52")
    assert thingy.steps("configure", 200)[0].data.hex() == "e803e803e803c80001"


def test_unsupported_rate_is_profile_error() -> None:
    with pytest.raises(ProfileError, match="unsupported"):
        load_profile("witmotion-wt901ble").check_rate(333)


def test_name_matching() -> None:
    assert load_profile("movesense-imu6").matches_name("Movesense 174630000192")
    assert load_profile("movella-dot").matches_name("Xsens DOT")
    assert not load_profile("thingy52").matches_name("Movesense 1")
    assert not load_profile("thingy52").matches_name(None)


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ProfileError, match="coach-sim"):
        load_profile("no-such-sensor")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    file = tmp_path / f"{name}.toml"
    file.write_text(text, encoding="utf-8")
    return file


def _base_text() -> str:
    return available_profiles()["coach-sim"].read_text(encoding="utf-8")


def test_extra_key_names_file_and_path(tmp_path: Path) -> None:
    text = _base_text().replace('framing = "notification"', 'framing = "notification"\nbogus = 1')
    file = _write(tmp_path, "coach-sim", text)
    with pytest.raises(ProfileError) as info:
        load_profile(file)
    assert str(file) in str(info.value)
    assert "packet.bogus: unknown key" in str(info.value)


def test_bad_dtype_names_field(tmp_path: Path) -> None:
    text = _base_text().replace(
        'acc = { offset = 0, dtype = "<i2"', 'acc = { offset = 0, dtype = ">i2"'
    )
    with pytest.raises(ProfileError, match=r"packet\.acc\.dtype"):
        load_profile(_write(tmp_path, "coach-sim", text))


def test_name_must_match_stem(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="file stem"):
        load_profile(_write(tmp_path, "other", _base_text()))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(_write(tmp_path, "coach-sim", "name = "))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.toml")


def test_mount_must_be_rotation(tmp_path: Path) -> None:
    text = _base_text().replace(
        'measures = ["acc", "gyr"]',
        'measures = ["acc", "gyr"]\nmount_rotation = [[1, 0, 0], [0, 1, 0], [0, 0, -1]]',
    )
    with pytest.raises(ProfileError, match="mount_rotation"):
        load_profile(_write(tmp_path, "coach-sim", text))


def test_missing_rate_code(tmp_path: Path) -> None:
    text = _base_text().replace(
        'rate_code = { "100" = "64", "200" = "c8" }', 'rate_code = { "200" = "c8" }'
    )
    with pytest.raises(ProfileError, match="rate_code"):
        load_profile(_write(tmp_path, "coach-sim", text))
