"""Cues through the whole pipeline on simulated runs with a known onset (issue 4 targets)."""

from __future__ import annotations

import csv
import wave
from pathlib import Path

import numpy as np

from coach.cli import main
from coach.config import load_config
from coach.runtime import replay_session
from coach.sources.csv_folder import CsvSession
from coach.sources.simulate import (
    SimulationParams,
    parse_scenario,
    simulate,
    write_simulated_session,
)

ONSET_S = 100.0


def test_drop_cue_fires_within_8_strides_of_the_onset_and_never_before() -> None:
    config = load_config()
    run = simulate(
        SimulationParams(
            duration_s=ONSET_S + 40.0,
            seed=21,
            mount="random",
            packet_loss=0.01,
            clock_drift_ppm=100.0,
            pelvic_drop_deg=5.0,
            scenario=parse_scenario(f"pelvic_drop_deg=5->10@{ONSET_S:g}s"),
        )
    )
    result = replay_session(config, CsvSession(run.blocks), block_s=1.0)
    drop_cues = [c for c in result.cues if c.rule == "pelvic_drop"]
    assert drop_cues and all(c.t >= ONSET_S for c in drop_cues)
    strides_before_cue = [
        s for s in result.strides if s.t >= ONSET_S and s.t_detected <= drop_cues[0].t
    ]
    assert len(strides_before_cue) <= 8
    assert [c.rule for c in result.cues] == ["pelvic_drop"] * len(result.cues)


def test_clean_run_at_normal_form_stays_quiet() -> None:
    config = load_config()
    run = simulate(
        SimulationParams(
            duration_s=600.0,
            seed=22,
            mount="random",
            packet_loss=0.01,
            clock_drift_ppm=100.0,
            pelvic_drop_deg=5.0,
            cadence_spm=172.0,
            speed_mps=3.2,
        )
    )
    result = replay_session(config, CsvSession(run.blocks), block_s=1.0)
    assert len(result.strides) > 1500
    assert len(result.cues) <= 1


def test_replay_writes_cues_csv_and_a_wav_with_speech_at_the_cue_times(tmp_path: Path) -> None:
    run = simulate(
        SimulationParams(
            duration_s=90.0,
            seed=23,
            mount="tilted",
            pelvic_drop_deg=4.0,
            scenario=parse_scenario("pelvic_drop_deg=4->10@40s"),
        )
    )
    write_simulated_session(run, tmp_path / "session")
    cues_csv, wav_path = tmp_path / "cues.csv", tmp_path / "cues.wav"
    code = main(
        [
            "replay",
            str(tmp_path / "session"),
            "--quiet",
            "--cues-out",
            str(cues_csv),
            "--wav-out",
            str(wav_path),
        ]
    )
    assert code == 0
    with open(cues_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows and rows[0]["phrase"] == "squeeze, relax, float"
    with wave.open(str(wav_path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(float)
    assert pcm.size / rate >= 85.0
    for row in rows:
        start = int(float(row["t"]) * rate)
        speech = pcm[start : start + int(0.5 * rate)]
        assert np.sqrt(np.mean(speech**2)) > 500.0
    first = int(float(rows[0]["t"]) * rate)
    assert np.abs(pcm[: first - rate]).max() == 0  # silence before the first cue
