"""Decoding throughput per firmware profile, for realistic notification sizes.

Encodes 60 s of synthetic samples per profile at its default rate into the notifications the
device sends (coach-sim: 4 samples per 52-byte notification; WitMotion: one 20-byte frame per
notification, and frames split/joined at random cut points; Thingy:52: 18 bytes; Movella DOT:
40 bytes; Movesense: 158 + 42-byte parts of 8 samples), then decodes them with host arrival
times that carry 0-30 ms of random BLE delay. Prints samples decoded per second of CPU time
(perf_counter), notifications per second, and the worst sample-time error after 20 s.

Run: ``.venv/bin/python benchmarks/decode_throughput.py``
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from coach.profiles import available_profiles, load_profile
from coach.wire import Decoder, encode

SECONDS = 60.0


def _split_joined(notes: list[bytes], rng: np.random.Generator) -> list[bytes]:
    stream = b"".join(notes)
    cuts = np.sort(rng.choice(np.arange(1, len(stream)), size=len(notes), replace=False))
    edges = np.r_[0, cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges) if b > a]


def bench(name: str, split: bool = False, repeats: int = 3) -> tuple[float, float, float, int]:
    """(samples/s, notifications/s, worst |t error| after 20 s in ms, notification bytes)."""
    profile = load_profile(name)
    rate = profile.rates.default_hz
    n = int(SECONDS * rate)
    rng = np.random.default_rng(0)
    true_t = 2.0 + np.arange(n) / (rate * (1 + 100e-6))
    acc = rng.normal(0.0, 20.0, (n, 3))
    gyr = rng.normal(0.0, 3.0, (n, 3))
    notes = encode(profile, true_t, acc, gyr)
    if split:
        notes = _split_joined(notes, rng)
    # Arrival: after the last byte of each notification is sampled, plus 0-30 ms of delay.
    ends = np.cumsum([len(b) for b in notes])
    sample_of_end = np.clip(ends * n // ends[-1] - 1, 0, n - 1)
    host = true_t[sample_of_end] + rng.uniform(0.0, 0.030, len(notes))
    host = np.maximum.accumulate(host)
    best = float("inf")
    err_ms = float("nan")
    for _ in range(repeats):
        dec = Decoder(profile)
        start = time.perf_counter()
        outs = [dec.feed(b, h) for b, h in zip(notes, host.tolist(), strict=True)]
        best = min(best, time.perf_counter() - start)
        t = np.concatenate([o.t for o in outs])
        idx = np.concatenate([o.index for o in outs])
        late = t > 22.0
        err_ms = float(np.max(np.abs(t[late] - true_t[idx[late]]))) * 1e3
    samples = dec.stats.samples
    return samples / best, len(notes) / best, err_ms, int(np.median([len(b) for b in notes]))


def main() -> None:
    """Print one row per profile."""
    print(f"{'profile':<34}{'bytes/notif':>12}{'samples/s':>14}{'notifs/s':>12}{'max |dt| ms':>13}")
    for name in available_profiles():
        rows = [(name, False)]
        if load_profile(name).packet.framing == "byte_stream":
            rows.append((name, True))
        for prof, split in rows:
            sps, nps, err, size = bench(prof, split)
            label = prof + (" (split/joined)" if split else "")
            print(f"{label:<34}{size:>12}{sps:>14,.0f}{nps:>12,.0f}{err:>13.2f}")


if __name__ == "__main__":
    main()
