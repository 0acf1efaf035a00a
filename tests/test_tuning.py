"""Threshold tuning: sweeps equal full replays, moving values equal the engine's, suggestions,
baselines, athlete files, live config reload and the tune/baseline commands."""

from __future__ import annotations

import asyncio
import csv
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coach import cli_tune, tuning
from coach.athlete import (
    AthleteFile,
    MetricBaselineEntry,
    athlete_baseline,
    load_baseline,
    read_athlete_file,
    write_athlete_file,
)
from coach.cli import main
from coach.config import (
    DEFAULT_CONFIG_PATH,
    CoachConfig,
    CueRuleConfig,
    CuesConfig,
    load_config,
    parse_config,
)
from coach.config_watch import ConfigWatcher
from coach.cues.engine import CueEngine, run_cues
from coach.errors import ConfigError
from coach.runtime import RunResult, replay_session
from coach.sources.csv_folder import CsvSession
from coach.sources.replay import summarize_block
from coach.sources.simulate import SimulationParams, parse_scenario, simulate
from coach.types import STRIDE_METRICS, Side, Stride

# ----------------------------------------------------------------------------- fixtures

ROTATION_RULE = {
    "name": "rotation_base",
    "metric": "pelvic_rotation_deg",
    "band": "baseline",
    "direction": "both",
    "baseline_sd": 2.0,
    "window_strides": 4,
    "persistence_n": 3,
    "persistence_m": 5,
    "cooldown_s": 10.0,
    "priority": 5,
    "phrases": ["quiet hips"],
}


@pytest.fixture(scope="module")
def fault_session() -> tuple[CsvSession, RunResult]:
    """60 s of running whose pelvic drop rises from 4 to 10 degrees at 30 s, replayed once."""
    run = simulate(
        SimulationParams(
            duration_s=60.0,
            seed=5,
            pelvic_drop_deg=4.0,
            scenario=parse_scenario("pelvic_drop_deg=4->10@30s"),
        )
    )
    session = CsvSession(run.blocks)
    return session, replay_session(load_config(), session)


def _athlete_config(tmp_path: Path) -> CoachConfig:
    """The default config plus a rotation rule banded on an athlete-file baseline."""
    athlete = AthleteFile(
        name="sim",
        metrics={"pelvic_rotation_deg": MetricBaselineEntry(mean=10.0, sd=0.4, n=100)},
    )
    path = write_athlete_file(tmp_path / "athletes" / "sim.toml", athlete)
    data = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    data["athlete"]["athlete_file"] = str(path)
    data["cues"]["rules"].append(ROTATION_RULE)
    data["cues"]["min_gap_s"] = 4.0
    return parse_config(data)


def synthetic_strides(n: int = 900, seed: int = 1) -> list[Stride]:
    """Alternating stances with noise, a drop fault, a walk break, gaps and missing values."""
    rng = np.random.default_rng(seed)
    strides = []
    t = 0.0
    for i in range(n):
        walking = 500 <= i < 560
        t += 0.55 if walking else 0.35
        side = Side.LEFT if i % 2 == 0 else Side.RIGHT
        quality = frozenset({"gap"}) if 300 <= i < 306 else frozenset()
        if i in (320, 321):
            quality = frozenset({"saturation"})
        strides.append(
            Stride(
                t=t,
                t_detected=t + 0.04,
                side=side,
                contact_time_ms=None
                if i in (400, 401)
                else float(rng.normal(250.0, 12.0)) + (250.0 if walking else 0.0),
                cadence_spm=float(rng.normal(110.0 if walking else 170.0, 4.0)),
                pelvic_drop_deg=float(rng.normal(5.0, 1.2)) + (4.0 if i > 650 else 0.0),
                pelvic_rotation_deg=float(rng.normal(10.0, 0.8)),
                braking_mps=float(rng.normal(0.30, 0.03)) if i % 7 else None,
                quality=quality,
            )
        )
    return strides


def _cues_config(rules: list[dict[str, Any]], **extra: Any) -> CuesConfig:
    return CuesConfig.model_validate({"rules": rules, "mute_first_strides": 20, **extra})


VARIED_RULES = [
    {"name": "drop", "metric": "pelvic_drop_deg", "high": 7.0, "priority": 100,
     "phrases": ["squeeze"], "cooldown_s": 5.0},
    {"name": "contact_left", "metric": "contact_time_ms", "side": "left", "high": 262.0,
     "statistic": "median", "window_strides": 4, "valid_max": 450.0, "phrases": ["light"]},
    {"name": "cadence", "metric": "cadence_spm", "low": 167.0, "valid_min": 130.0,
     "window_strides": 6, "hysteresis": 1.0, "phrases": ["quick"]},
    {"name": "braking", "metric": "braking_mps", "band": "baseline", "direction": "both",
     "baseline_sd": 1.0, "phrases": ["tall"]},
    {"name": "rotation", "metric": "pelvic_rotation_deg", "band": "baseline",
     "baseline_sd": 1.0, "baseline_delta": 0.1, "phrases": ["hips"]},
]  # fmt: skip


# ------------------------------------------------------------------ sweep == full replay


def test_sweep_cues_equal_full_replays(
    fault_session: tuple[CsvSession, RunResult], tmp_path: Path
) -> None:
    session, base = fault_session
    config = _athlete_config(tmp_path)
    strides = base.strides  # the core's output does not depend on [cues]
    varies = [
        tuning.parse_vary("pelvic_drop.high=6,12"),
        tuning.parse_vary("rotation_base.baseline_sd=1,6"),
    ]
    rows = tuning.sweep(
        config.cues,
        [tuning.SessionStrides("fault", strides, base.duration_s)],
        varies,
        athlete_baseline(config),
    )
    counts_seen = set()
    for setting in tuning.grid(varies):
        full_config = config.model_copy(update={"cues": tuning.apply_setting(config.cues, setting)})
        replayed = replay_session(full_config, session)
        assert [(s.t, s.side) for s in replayed.strides] == [(s.t, s.side) for s in strides]
        swept = run_cues(full_config.cues, strides, athlete_baseline(config))
        assert swept.cues == replayed.cues
        for row in (r for r in rows if r.setting == setting):
            expected = [
                c
                for c in replayed.cues
                if c.rule == row.rule and row.side in (tuning.ALL_SIDES, c.side.value)
            ]
            assert row.cues == len(expected), (setting, row)
            assert row.first_cue_s == (expected[0].t if expected else None)
            counts_seen.add((row.rule, row.side, row.cues))
    drop_counts = {dict(r.setting)["pelvic_drop.high"]: r.cues for r in rows
                   if r.rule == "pelvic_drop" and r.side == "all"}  # fmt: skip
    assert drop_counts[6.0] >= 1 and drop_counts[12.0] == 0  # the fault is cued, not above it
    assert any(rule == "rotation_base" and n > 0 for rule, _, n in counts_seen)


# ------------------------------------------------------------ moving values == engine's


@pytest.mark.parametrize("min_gap_s", [0.0, 8.0])
def test_moving_values_match_the_engine_counts(min_gap_s: float) -> None:
    strides = synthetic_strides()
    cues = _cues_config(VARIED_RULES, min_gap_s=min_gap_s, baseline={"strides": 40})
    baseline = {"pelvic_rotation_deg": (10.0, 0.8)}
    stats = run_cues(cues, strides, baseline).stats
    session = tuning.SessionStrides("s", strides, strides[-1].t)
    rows = tuning.evaluate_setting(cues, session, (), baseline)
    for rule in cues.rules:
        total = next(r for r in rows if r.rule == rule.name and r.side == tuning.ALL_SIDES)
        assert total.evaluated == stats[rule.name].evaluated > 0, rule.name
        assert total.outside == stats[rule.name].outside, rule.name
        assert total.cues == stats[rule.name].fired
        per_side = [r for r in rows if r.rule == rule.name and r.side != tuning.ALL_SIDES]
        assert sum(r.evaluated for r in per_side) == total.evaluated
        assert sum(r.outside_s for r in per_side) == pytest.approx(total.outside_s)
        assert 0.0 <= total.outside_s <= total.evaluated_s <= session.duration_s
    left_only = [r for r in rows if r.rule == "contact_left"]
    assert {r.side: r.evaluated for r in left_only}["right"] == 0


def test_time_outside_follows_the_fault() -> None:
    strides = synthetic_strides()
    cues = _cues_config(VARIED_RULES[:1])
    session = tuning.SessionStrides("s", strides, strides[-1].t)
    row = next(r for r in tuning.evaluate_setting(cues, session) if r.side == tuning.ALL_SIDES)
    fault_s = strides[-1].t_detected - strides[651].t_detected
    assert row.outside_s == pytest.approx(fault_s, rel=0.15)
    assert row.first_cue_s is not None and row.first_cue_s > strides[650].t


# ------------------------------------------------------------------------- settings


def test_parse_vary_ranges_lists_and_errors() -> None:
    vary = tuning.parse_vary("pelvic_drop.high=5:6:0.25")
    assert vary.key == "pelvic_drop.high"
    assert vary.values == (5.0, 5.25, 5.5, 5.75, 6.0)
    assert tuning.parse_vary("cues.min_gap_s=4, 8,16").values == (4.0, 8.0, 16.0)
    assert tuning.parse_vary("a.b=0.1:0.3:0.1").values == (0.1, 0.2, 0.3)
    for bad in ("pelvic_drop=5", "x.high=1:2", "x.high=2:1:1", "x.high=1:2:0", "x.high=a"):
        with pytest.raises(ValueError, match="--vary"):
            tuning.parse_vary(bad)


def test_grid_order_and_apply_setting() -> None:
    cues = load_config().cues
    varies = [tuning.parse_vary("pelvic_drop.high=6,8"), tuning.parse_vary("cues.min_gap_s=1,2")]
    settings = tuning.grid(varies)
    assert settings[1] == (("pelvic_drop.high", 6.0), ("cues.min_gap_s", 2.0))
    changed = tuning.apply_setting(cues, settings[3])
    assert changed.rules[0].high == 8.0 and changed.min_gap_s == 2.0
    assert changed.rules[1:] == cues.rules[1:]
    assert cues.rules[0].high == 7.0  # the original is untouched
    window = tuning.apply_setting(cues, (("pelvic_drop.window_strides", 3.0),))
    assert window.rules[0].window_strides == 3 and isinstance(window.rules[0].window_strides, int)


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ("pelvic_drop.window_strides=0", r"cues\.rules\.0\.window_strides .*greater than or equal"),
        ("pelvic_drop.window_strides=2.5", r"window_strides .*valid integer"),
        ("pelvic_drop.persistence_n=9", r"persistence_n \(9\) must not exceed persistence_m"),
        ("pelvic_drop.baseline_sd=1", r"baseline_sd only apply to band = 'baseline'"),
        ("cues.min_gap_s=-1", r"cues\.min_gap_s .*greater than or equal to 0"),
        ("nope.high=1", r"no rule named 'nope'"),
        ("pelvic_drop.phrases=1", r"not a numeric rule field"),
    ],
)
def test_bad_settings_name_the_field(vary: str, expected: str) -> None:
    cues = load_config().cues
    with pytest.raises(ConfigError, match=expected):
        tuning.grid_configs(cues, [tuning.parse_vary(vary)])


def test_sweep_validates_every_setting_before_running() -> None:
    calls: list[int] = []
    with pytest.raises(ConfigError) as error:
        tuning.sweep(
            load_config().cues,
            [tuning.SessionStrides("s", synthetic_strides(100), 40.0)],
            [tuning.parse_vary("pelvic_drop.persistence_n=1:20:1")],
            progress=lambda done, total: calls.append(done),
        )
    assert not calls
    assert len(error.value.problems) <= 9 and "more" in error.value.problems[-1]


def test_table_records_and_sessions_combined() -> None:
    strides = synthetic_strides()
    cues = _cues_config(VARIED_RULES[:3])
    sessions = [
        tuning.SessionStrides("a", strides, strides[-1].t),
        tuning.SessionStrides("b", strides[:450], strides[449].t),
    ]
    varies = [tuning.parse_vary("drop.high=6:8:1")]
    progress: list[tuple[int, int]] = []
    rows = tuning.sweep(cues, sessions, varies, progress=lambda d, t: progress.append((d, t)))
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert len(rows) == 3 * 2 * 3 * 3  # settings x sessions x rules x (left, right, all)
    combined = tuning.combine_sessions(rows)
    assert len(combined) == 3 * 3 * 3
    first = next(r for r in combined if r.rule == "drop" and r.side == "all")
    parts = [r for r in rows if r.setting == first.setting and r.rule == "drop" and r.side == "all"]
    assert first.cues == sum(r.cues for r in parts)
    assert first.duration_s == pytest.approx(sessions[0].duration_s + sessions[1].duration_s)
    table = tuning.format_sweep_table(combined, ["drop.high"], ["drop"])
    assert table.splitlines()[0].split()[:3] == ["drop.high", "rule", "side"]
    assert len(table.splitlines()) == 1 + 3 * 3
    records = tuning.sweep_records(rows, ["drop.high"])
    assert set(records[0]) == {"drop.high", *tuning.SWEEP_COLUMNS}


# -------------------------------------------------------------------------- suggest


@pytest.mark.parametrize("fraction", [0.05, 0.2])
def test_suggested_bands_leave_the_chosen_fraction_outside(fraction: float) -> None:
    strides = synthetic_strides(seed=3)
    cues = _cues_config(VARIED_RULES, baseline={"strides": 40})
    session = tuning.SessionStrides("s", strides, strides[-1].t)
    suggestions = tuning.suggest(cues, [session], fraction)
    assert [s.name for s in suggestions] == [r["name"] for r in VARIED_RULES]
    rules = list(cues.rules)
    for item in suggestions:
        assert item.rule is not None, item.note
        rules[[r.name for r in rules].index(item.name)] = item.rule
    tuned = cues.model_copy(update={"rules": rules})
    stats = run_cues(tuned, strides).stats
    for name, s in stats.items():
        assert s.outside / s.evaluated == pytest.approx(fraction, abs=0.04), name
    text = tuning.suggestions_toml(suggestions, fraction)
    pasted = tomllib.loads(text)["cues"]["rules"]
    assert [CueRuleConfig.model_validate(r).name for r in pasted] == [r.name for r in rules]


def test_suggest_reports_rules_without_data() -> None:
    strides = [
        Stride(t=0.35 * i, t_detected=0.35 * i, side=Side.LEFT, pelvic_drop_deg=5.0)
        for i in range(100)
    ]
    cues = _cues_config(VARIED_RULES[1:2])
    (item,) = tuning.suggest(cues, [tuning.SessionStrides("s", strides, 35.0)], 0.1)
    assert item.rule is None and "0 evaluated" in item.note
    assert "no suggestion" in tuning.suggestions_toml([item], 0.1)
    with pytest.raises(ValueError, match="fraction"):
        tuning.suggest(cues, [], 0.7)


# ------------------------------------------------------------------------- baseline


def test_steady_baseline_leaves_out_start_walking_flags_and_outliers() -> None:
    rng = np.random.default_rng(7)
    strides = []
    for i in range(700):
        walking = 300 <= i < 350
        drop = float(rng.normal(6.0, 1.0))
        if i % 97 == 0:
            drop = 40.0  # a glitch
        strides.append(
            Stride(
                t=0.35 * i,
                t_detected=0.35 * i,
                side=Side.LEFT if i % 2 else Side.RIGHT,
                cadence_spm=110.0 if walking else float(rng.normal(172.0, 3.0)),
                pelvic_drop_deg=drop + (5.0 if walking else 0.0),
                quality=frozenset({"gap"}) if 500 <= i < 510 else frozenset(),
            )
        )
    found = tuning.steady_baseline([strides], STRIDE_METRICS, skip_first=30)
    assert found.excluded == {"start": 30, "quality": 10, "walking": 50}
    assert found.strides_steady == 700 - 90
    drop_baseline = found.metrics["pelvic_drop_deg"]
    assert drop_baseline.mean == pytest.approx(6.0, abs=0.15)
    assert drop_baseline.sd == pytest.approx(1.0, abs=0.1)
    assert drop_baseline.outliers >= 5
    assert found.metrics["cadence_spm"].mean == pytest.approx(172.0, abs=0.5)
    assert "contact_time_ms" not in found.metrics and not found.too_few


def test_athlete_file_round_trip_and_errors(tmp_path: Path) -> None:
    athlete = AthleteFile(
        name="anna",
        sources=["s1"],
        metrics={"pelvic_drop_deg": MetricBaselineEntry(mean=5.2, sd=1.1, n=400)},
    )
    path = write_athlete_file(tmp_path / "a" / "anna.toml", athlete)
    assert read_athlete_file(path) == athlete
    assert load_baseline(path) == {"pelvic_drop_deg": (5.2, 1.1)}
    config = load_config().model_copy(
        update={"athlete": load_config().athlete.model_copy(update={"athlete_file": path})}
    )
    assert athlete_baseline(config) == {"pelvic_drop_deg": (5.2, 1.1)}
    assert athlete_baseline(load_config()) is None
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[metrics.pelvic_drop_deg]\nmean = 5\nsd = -1\nn = 3\n')
    with pytest.raises(ConfigError, match=r"metrics\.pelvic_drop_deg\.sd"):
        load_baseline(bad)
    bad.write_text('name = "x"\n[metrics.drop]\nmean = 5\nsd = 1\nn = 3\n')
    with pytest.raises(ConfigError, match=r"metrics\.drop"):
        load_baseline(bad)
    with pytest.raises(ConfigError, match="coach baseline"):
        load_baseline(tmp_path / "missing.toml")
    engine = CueEngine(load_config().cues, load_baseline(path))
    assert engine.baseline("pelvic_drop_deg") == (5.2, 1.1)


# ---------------------------------------------------------------------- live reload


_TICK = [1_000_000_000]


def _write(path: Path, text: str) -> None:
    """Write and give the file a new modification time (filesystems may have coarse clocks)."""
    path.write_text(text)
    _TICK[0] += 1_000_000_000
    os.utime(path, ns=(_TICK[0], _TICK[0]))


def test_config_watcher_applies_good_files_and_keeps_the_old_on_bad(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    path = tmp_path / "coach.toml"
    _write(path, text)
    applied: list[CoachConfig] = []
    errors: list[str] = []
    watcher = ConfigWatcher(path, applied.append, errors.append)
    assert watcher.poll(1.0) is None  # unchanged
    _write(path, text.replace("high = 7.0", "high = 6.5"))
    new = watcher.poll(2.0)
    assert new is not None and applied == [new] and new.cues.rules[0].high == 6.5
    assert watcher.history[-1].changed == ("cues.rules.pelvic_drop.high",)
    assert watcher.history[-1].t == 2.0
    _write(path, text.replace("high = 7.0", "high = -x"))
    assert watcher.poll(3.0) is None
    assert len(errors) == 1 and "keeping the running config" in errors[0]
    _write(path, text.replace("window_strides = 5", "window_strides = 0"))
    assert watcher.poll(4.0) is None
    assert "cues.rules.0.window_strides" in errors[1]
    assert watcher.config.cues.rules[0].high == 6.5 and len(applied) == 1
    _write(path, text.replace("calibration_s = 4.0", "calibration_s = 5.0"))
    assert watcher.poll(5.0) is None
    assert "[detection] changed, which needs a restart" in errors[2]
    path.unlink()
    assert watcher.poll(6.0) is None and "cannot read" in errors[3]
    assert watcher.poll(6.5) is None and len(errors) == 4  # reported once
    _write(path, text.replace("min_gap_s = 8.0", "min_gap_s = 12.0"))
    assert watcher.poll(7.0) is not None and watcher.config.cues.min_gap_s == 12.0
    assert watcher.config.cues.rules[0].high == 7.0


def test_config_watcher_runs_as_an_asyncio_task(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    path = tmp_path / "coach.toml"
    _write(path, text)
    applied: list[CoachConfig] = []
    watcher = ConfigWatcher(path, applied.append, lambda message: None)
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            _write(path, text.replace("min_gap_s = 8.0", "min_gap_s = 9.5"))
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watcher.run(lambda: float(len(sleeps)), 0.5, fake_sleep))
    assert sleeps == [0.5, 0.5, 0.5]
    assert [c.cues.min_gap_s for c in applied] == [9.5]
    assert watcher.history[0].t == 1.0


# ------------------------------------------------------------------------- commands


@pytest.fixture
def replayed(
    fault_session: tuple[CsvSession, RunResult], monkeypatch: pytest.MonkeyPatch
) -> list[Path]:
    """``load_session`` answers from the module's replay (the loader is tested above)."""
    session, result = fault_session
    calls: list[Path] = []

    def fake_load(config: CoachConfig, path: Path, show: bool = True) -> cli_tune.LoadedSession:
        calls.append(path)
        sensors = [summarize_block(b) for b in session.blocks.values()]
        return cli_tune.LoadedSession(path, result, sensors)

    monkeypatch.setattr(cli_tune, "load_session", fake_load)
    return calls


def test_tune_command_prints_a_table_and_writes_csv(
    replayed: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep.csv"
    argv = ["tune", "s1", "s2", "--vary", "pelvic_drop.high=6:8:1", "--csv", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 setting(s) x 2 session(s)" in printed and "pelvic_drop.high" in printed
    assert "cadence_low" not in printed.split("sessions)")[1]  # only the varied rule shown
    with open(out, encoding="utf-8") as file:
        records = list(csv.DictReader(file))
    assert {r["session"] for r in records} == {"s1", "s2", "all"}
    assert {r["pelvic_drop.high"] for r in records} == {"6.0", "7.0", "8.0"}


def test_tune_command_errors_before_replaying(
    replayed: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", "s1", "--vary", "pelvic_drop.window_strides=0"]) == 2
    err = capsys.readouterr().err
    assert "cues.rules.0.window_strides" in err and "Traceback" not in err
    assert main(["tune", "s1", "--suggest", "--fraction", "0.9"]) == 2
    assert not replayed


def test_tune_suggest_prints_toml(replayed: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "s1", "--suggest", "--fraction", "0.1"]) == 0
    printed = capsys.readouterr().out
    snippet = printed[printed.index("# Suggested") :]
    rules = tomllib.loads(snippet)["cues"]["rules"]
    assert rules[0]["name"] == "pelvic_drop" and math.isfinite(rules[0]["high"])


def test_baseline_command_writes_an_athlete_file(
    replayed: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "athletes" / "anna.toml"
    assert main(["baseline", "s1", "--athlete", "anna", "--out", str(out)]) == 0
    baseline = load_baseline(out)
    assert baseline["cadence_spm"][0] == pytest.approx(170.0, abs=5.0)
    assert f'athlete_file = "{out.as_posix()}"' in capsys.readouterr().out
    assert main(["baseline", "s1", "--athlete", "bad name"]) == 2
