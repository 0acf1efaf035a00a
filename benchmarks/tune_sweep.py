"""Threshold sweep speed: 100 settings over a 1-hour session. Target: the sweep < 10 s.

A 1-hour run is simulated (pelvic drop fault for a while, a walk break, packet loss) and
replayed through the detection core once, as ``coach tune`` does; then the cue engine alone is
re-run for a 10 x 10 grid (pelvic_drop.high x contact_long.high). The full replay takes far
longer than the sweep, so its strides are cached in a temporary file keyed by the simulation
parameters and the core's source (``--no-cache`` forces a fresh replay); the replay time is
printed either way (measured now, or when the cache was made).

    .venv/bin/python benchmarks/tune_sweep.py [--duration-s 3600] [--no-cache]
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

from coach import tuning
from coach.config import load_config
from coach.runtime import replay_session
from coach.sources.csv_folder import CsvSession
from coach.sources.simulate import SimulationParams, parse_scenario, simulate

VARIES = ("pelvic_drop.high=5:9.5:0.5", "contact_long.high=300:345:5")
TARGET_S = 10.0
CACHE_DIR = Path(tempfile.gettempdir()) / "coach-bench"


def params_for(duration_s: float) -> SimulationParams:
    """A realistic hour: drop fault from 20 to 30 min, walk break at 40 min, 0.5 % loss."""
    return SimulationParams(
        duration_s=duration_s,
        seed=42,
        pelvic_drop_deg=5.0,
        packet_loss=0.005,
        clock_drift_ppm=50.0,
        scenario=parse_scenario(
            f"pelvic_drop_deg=5->9@{duration_s / 3:.0f}s..{duration_s / 3 + 60:.0f}s,"
            f"pelvic_drop_deg=9->5@{duration_s / 2:.0f}s"
        ),
        walk_breaks=((duration_s * 2 / 3, duration_s * 2 / 3 + 120.0),),
    )


def _cache_key(params: SimulationParams) -> str:
    digest = hashlib.sha256(repr(params).encode())
    package = Path(__file__).resolve().parents[1] / "coach"
    for path in sorted([*package.glob("stream/*.py"), *package.glob("sources/*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def session_strides(params: SimulationParams, use_cache: bool) -> dict[str, Any]:
    """Strides of the simulated session (from the cache when possible) and how long they took."""
    cache = CACHE_DIR / f"tune_sweep-{_cache_key(params)}.pkl"
    if use_cache and cache.is_file():
        found: dict[str, Any] = pickle.loads(cache.read_bytes())
        found["cached"] = str(cache)
        return found
    start = time.perf_counter()
    run = simulate(params)
    simulated = time.perf_counter()
    result = replay_session(load_config(), CsvSession(run.blocks))
    replayed = time.perf_counter()
    found = {
        "strides": result.strides,
        "duration_s": result.duration_s,
        "simulate_s": simulated - start,
        "replay_s": replayed - simulated,
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(found))
    found["cached"] = None
    return found


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--no-cache", action="store_true", help="replay even when cached")
    args = parser.parse_args()
    params = params_for(args.duration_s)
    found = session_strides(params, not args.no_cache)
    strides = found["strides"]
    when = f"(measured when cached, {found['cached']})" if found["cached"] else "(measured now)"
    print(f"session: {found['duration_s'] / 60:.1f} min simulated, {len(strides)} strides")
    print(f"simulate {found['simulate_s']:.1f} s, full replay {found['replay_s']:.1f} s {when}")

    config = load_config()
    varies = [tuning.parse_vary(text) for text in VARIES]
    sessions = [tuning.SessionStrides("bench", strides, found["duration_s"])]
    start = time.perf_counter()
    rows = tuning.sweep(config.cues, sessions, varies)
    sweep_s = time.perf_counter() - start
    settings = len(tuning.grid(varies))
    start = time.perf_counter()
    tuning.suggest(config.cues, sessions, 0.1)
    suggest_s = time.perf_counter() - start

    print(f"sweep: {settings} settings x {len(config.cues.rules)} rules, {len(rows)} rows")
    print(
        f"sweep time {sweep_s:.2f} s ({1e3 * sweep_s / settings:.1f} ms per setting); "
        f"target < {TARGET_S:.0f} s: {'PASS' if sweep_s < TARGET_S else 'FAIL'}"
    )
    print(f"suggest time {suggest_s:.2f} s")
    keys = [vary.key for vary in varies]
    chosen = [
        r
        for r in rows
        if r.rule == "pelvic_drop" and r.side == "all" and dict(r.setting)[keys[1]] == 320.0
    ]
    print()
    print(tuning.format_sweep_table(chosen, keys))


if __name__ == "__main__":
    main()
