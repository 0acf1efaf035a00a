from __future__ import annotations

from pathlib import Path

import pytest

from coach.cli import main
from coach.config import DEFAULT_CONFIG_PATH, load_config, parse_config
from coach.errors import ConfigError


def test_default_config_is_valid() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    assert {s.location for s in config.sensors} == {"pelvis", "left_shank", "right_shank"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"detection": {"min_cadence_spm": 500}}, "detection.min_cadence_spm"),
        ({"detection": {"bogus": 1}}, "detection.bogus: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"audio": {"rate_wpm": "fast"}}, "audio.rate_wpm"),
        ({"sensors": [{"location": "knee"}]}, "sensors.0.location"),
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"audio": {"output": "speaker"}}, "'device' or 'none'"),
    ],
)
def test_bad_values_name_the_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml")
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_range_errors_state_the_allowed_range() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"detection": {"min_cadence_spm": 500}}, "test.toml")
    assert "allowed: >= 40.0 and <= 200.0" in info.value.problems[0]


def test_every_problem_is_reported() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"detection": {"min_cadence_spm": 1, "stale_sensor_s": -1}, "x": 1})
    assert len(info.value.problems) == 3


def test_unknown_profile_is_rejected() -> None:
    data = {"sensors": [{"location": "pelvis", "profile": "acme-9000"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml", known_profiles={"coach-sim", "thingy52"})
    assert "sensors.0.profile: unknown profile 'acme-9000'" in info.value.problems[0]
    assert "coach-sim" in info.value.problems[0]


def test_repeated_location_is_rejected() -> None:
    data = {"sensors": [{"location": "pelvis"}, {"location": "pelvis"}]}
    with pytest.raises(ConfigError, match="repeated: pelvis"):
        parse_config(data)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[detection\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(DEFAULT_CONFIG_PATH)]) == 0
    out = capsys.readouterr().out
    assert "[detection]" in out and "valid" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[detection]\nmin_cadence_spm = 500\nfoo = 1\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "detection.min_cadence_spm" in err and "detection.foo: unknown key" in err
    assert "Traceback" not in err


def test_effective_config_loads_back_unchanged(tmp_path: Path) -> None:
    import tomli_w

    from coach.config import config_to_toml_dict

    config = load_config(DEFAULT_CONFIG_PATH)
    written = tmp_path / "effective.toml"
    written.write_text(tomli_w.dumps(config_to_toml_dict(config)))
    assert load_config(written) == config
