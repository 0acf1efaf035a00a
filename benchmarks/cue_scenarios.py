"""Cue engine on simulated runs through the whole pipeline (issue 4 targets).

Prints, over several seeds:
- onset scenario (pelvic drop 5 -> 10 degrees at minute 2): strides from the onset to the first
  drop cue (target: within 8 strides, never before the onset);
- clean run at normal form (30 minutes): false cues per 10 minutes (target <= 1);
- fading ("fraction" schedule 1.0 -> 0.5 -> 0.25): delivered share of eligible cues per step.

    .venv/bin/python benchmarks/cue_scenarios.py [--seeds 5] [--clean-minutes 30]
"""

from __future__ import annotations

import argparse

import numpy as np

from coach.config import CoachConfig, FadingConfig, load_config
from coach.cues import run_cues
from coach.runtime import replay_session
from coach.sources.csv_folder import CsvSession
from coach.sources.simulate import SimulationParams, parse_scenario, simulate
from coach.types import Stride

ONSET_S = 120.0


def strides_of(params: SimulationParams, config: CoachConfig) -> tuple[list[Stride], list]:
    run = simulate(params)
    result = replay_session(config, CsvSession(run.blocks), block_s=1.0)
    return result.strides, result.cues


def onset_trial(seed: int, config: CoachConfig) -> tuple[int | None, int]:
    """Strides from the onset to the first drop cue (None: no cue) and drop cues before it."""
    params = SimulationParams(
        duration_s=ONSET_S + 60.0,
        seed=seed,
        mount="random",
        packet_loss=0.01,
        clock_drift_ppm=100.0,
        pelvic_drop_deg=5.0,
        scenario=parse_scenario(f"pelvic_drop_deg=5->10@{ONSET_S:g}s"),
    )
    strides, cues = strides_of(params, config)
    drop_cues = [c for c in cues if c.rule == "pelvic_drop"]
    early = sum(1 for c in drop_cues if c.t < ONSET_S)
    late = [c for c in drop_cues if c.t >= ONSET_S]
    if not late:
        return None, early
    after_onset = [s for s in strides if s.t >= ONSET_S and s.t_detected <= late[0].t]
    return len(after_onset), early


def clean_trial(seed: int, minutes: float, config: CoachConfig) -> int:
    params = SimulationParams(
        duration_s=minutes * 60.0,
        seed=100 + seed,
        mount="random",
        packet_loss=0.01,
        clock_drift_ppm=100.0,
        pelvic_drop_deg=5.0,
        cadence_spm=172.0,
        speed_mps=3.2,
    )
    return len(strides_of(params, config)[1])


def fading_trial(config: CoachConfig) -> list[tuple[str, int, int]]:
    params = SimulationParams(
        duration_s=15 * 60.0,
        seed=7,
        mount="random",
        pelvic_drop_deg=9.5,
    )
    strides, _ = strides_of(params, config)
    steps = [(0.0, 1.0), (5.0, 0.5), (10.0, 0.25)]
    fading = FadingConfig.model_validate({"mode": "fraction", "steps": [list(s) for s in steps]})
    cues = config.cues.model_copy(update={"fading": fading})
    result = run_cues(cues, strides)
    rows = []
    for (start, fraction), end in zip(steps, [*(s[0] for s in steps[1:]), 1e9], strict=True):
        window = [d for d in result.decisions if start * 60 <= d.t < end * 60]
        fired = sum(1 for d in window if d.outcome == "fired")
        faded = sum(1 for d in window if d.outcome == "fading")
        rows.append((f"from minute {start:g}: fraction {fraction:g}", fired, fired + faded))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--clean-minutes", type=float, default=30.0)
    args = parser.parse_args()
    config = load_config()

    print(f"Onset: pelvic drop 5 -> 10 deg at {ONSET_S:g} s ({args.seeds} seeds)")
    delays = []
    for seed in range(args.seeds):
        strides, early = onset_trial(seed, config)
        delays.append(strides)
        print(
            f"  seed {seed}: first drop cue {strides} strides after the onset, "
            f"{early} drop cues before it"
        )
    found = [d for d in delays if d is not None]
    print(
        f"  -> cued in {len(found)}/{len(delays)} runs, strides after onset: median "
        f"{np.median(found) if found else float('nan'):.0f}, max {max(found, default=0)} "
        "(target <= 8)"
    )

    total = 0
    for seed in range(args.seeds):
        cues = clean_trial(seed, args.clean_minutes, config)
        total += cues
        print(f"  clean seed {seed}: {cues} cues in {args.clean_minutes:g} min")
    rate = total / (args.seeds * args.clean_minutes / 10.0)
    print(f"Clean runs: {rate:.2f} false cues per 10 min (target <= 1)")

    print("Fading (persistent fault, drop 9.5 deg, 15 min):")
    for label, delivered, eligible in fading_trial(config):
        share = delivered / eligible if eligible else float("nan")
        print(f"  {label}: {delivered}/{eligible} eligible cues delivered ({share:.2f})")


if __name__ == "__main__":
    main()
