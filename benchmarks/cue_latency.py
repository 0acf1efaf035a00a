"""Cue latency: time from AudioOutput.play() to the clip's first frame handed to the device.

Measured in the device callback with time.perf_counter(), on miniaudio's NULL backend and, when
PulseAudio is installed, on a private PulseAudio null sink started for the run (or the server
in $PULSE_SERVER). Target: median <= 10 ms. Also prints the start-up cost of rendering the
default phrases with espeak-ng (cold and from the cache).

    .venv/bin/python benchmarks/cue_latency.py [--n 300]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from coach.sinks.audio import AudioOutput
from coach.sinks.speech import PhraseBank, Speech

PHRASES = [
    "squeeze, relax, float",
    "quick feet",
    "light feet",
    "stand tall",
    "level hips",
    "relax your hips",
]


def measure(output: AudioOutput, n: int, seed: int = 0) -> np.ndarray:
    """Play n short clips at random moments; return play() to first-frame latencies, ms."""
    rng = random.Random(seed)
    clip = Speech(np.full(220, 1000, np.int16), output.rate_hz, "click")  # 10 ms
    latencies = []
    for _ in range(n):
        handle = output.play(clip)
        if not handle.started.wait(5.0):
            raise RuntimeError(f"clip never started on {output.backend}")
        assert handle.latency_s is not None
        latencies.append(handle.latency_s * 1e3)
        time.sleep(rng.uniform(0.015, 0.035))  # random phase against the device period
    return np.array(latencies)


def report(name: str, ms: np.ndarray) -> None:
    print(
        f"{name:<30} n={ms.size:<4} median {np.median(ms):6.2f} ms   "
        f"p90 {np.percentile(ms, 90):6.2f} ms   p99 {np.percentile(ms, 99):6.2f} ms   "
        f"max {ms.max():6.2f} ms"
    )


@contextmanager
def pulse_null_sink() -> Iterator[str | None]:
    """Server string of $PULSE_SERVER, or of a private null-sink daemon; None without one."""
    if os.environ.get("PULSE_SERVER"):
        yield os.environ["PULSE_SERVER"]
        return
    if shutil.which("pulseaudio") is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="coach-pulse-") as tmp:
        home = Path(tmp)
        socket = home / "native"
        env = {
            **os.environ,
            "HOME": tmp,
            "XDG_RUNTIME_DIR": tmp,
            "XDG_CONFIG_HOME": str(home / "config"),
            "PULSE_RUNTIME_PATH": str(home / "run"),
        }
        cmd = [
            "pulseaudio", "-D", "-n", "--exit-idle-time=-1", "--use-pid-file=yes",
            "--disable-shm=yes", f"--log-target=file:{home / 'log'}",
            "-L", "module-null-sink sink_name=coach_null",
            "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1",
        ]  # fmt: skip
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            print(f"pulseaudio did not start: {started.stderr.strip()[-200:]}", file=sys.stderr)
            yield None
            return
        pid = int((home / "run" / "pid").read_text().split()[0])
        try:
            yield f"unix:{socket}"
        finally:
            os.kill(pid, 15)


def render_cost() -> None:
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        cold = PhraseBank("en", 175, cache)
        cold.render(PHRASES)
        t1 = time.perf_counter()
        warm = PhraseBank("en", 175, cache)
        warm.render(PHRASES)
        t2 = time.perf_counter()
    print(
        f"render {len(PHRASES)} default phrases: cold {1e3 * (t1 - t0):.0f} ms "
        f"(incl. engine start), from cache {1e3 * (t2 - t1):.1f} ms; "
        f"retries {cold.stats.retries}, fallbacks {cold.stats.fallbacks}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="clips per backend")
    args = parser.parse_args()

    if shutil.which("espeak-ng"):
        render_cost()
    print(f"play() -> first frame handed to the device ({args.n} clips, 10 ms device period)")
    with AudioOutput("none") as output:
        output.wait_ready(10.0)
        report(f"null ({output.backend})", measure(output, args.n))
    with pulse_null_sink() as server:
        if server is None:
            print("pulseaudio null sink: skipped (apt-get install pulseaudio)")
            return
        os.environ["PULSE_SERVER"] = server
        t0 = time.perf_counter()
        with AudioOutput("device") as output:
            if output.is_null:
                print("pulseaudio null sink: not reachable, skipped")
                return
            output.wait_ready(10.0)
            print(
                f"pulse stream start (open to steady callbacks): {time.perf_counter() - t0:.2f} s"
            )
            report(f"pulse null sink ({output.backend})", measure(output, args.n))


if __name__ == "__main__":
    main()
