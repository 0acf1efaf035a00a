"""Decoders and encoders: golden byte vectors, framing, sequencing, clock estimation, fuzzing."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coach.profiles import STANDARD_GRAVITY, FirmwareProfile, available_profiles, load_profile
from coach.types import Location
from coach.wire import DecodedSamples, Decoder, encode, make_decoder

G = STANDARD_GRAVITY
DEG = math.pi / 180.0
PROFILES = sorted(available_profiles())


def _cat(outs: list[DecodedSamples]) -> DecodedSamples:
    gyr = [o.gyr for o in outs if o.gyr is not None]
    return DecodedSamples(
        np.concatenate([o.t for o in outs]),
        np.concatenate([o.acc for o in outs]),
        np.concatenate(gyr) if gyr else None,
        np.concatenate([o.index for o in outs]),
    )


# -- golden vectors from the public documentation --------------------------------------------


def test_witmotion_golden_frame() -> None:
    frame = b"\x55\x61" + struct.pack("<9h", 2048, -1024, 0, 16384, 0, -32768, 100, 200, 300)
    out = make_decoder("witmotion-wt901ble").feed(frame, 1.0)
    assert np.allclose(out.acc, [[G, -G / 2, 0.0]])
    assert out.gyr is not None
    assert np.allclose(out.gyr, [[1000 * DEG, 0.0, -2000 * DEG]])
    assert out.index.tolist() == [0]


def test_thingy52_golden() -> None:
    raw = struct.pack("<9h", 1024, -512, 0, 32, -64, 0, 16, 16, 16)
    out = make_decoder("thingy52").feed(raw, 0.5)
    assert np.allclose(out.acc, [[G, -G / 2, 0.0]])
    assert out.gyr is not None
    assert np.allclose(out.gyr, [[DEG, -2 * DEG, 0.0]])


def test_movella_dot_golden() -> None:
    payload = struct.pack("<I6f", 123456, 0.5, -9.81, 1.0, 90.0, 0.0, -45.0).ljust(40, b"\0")
    dec = make_decoder("movella-dot")
    out = dec.feed(payload, 2.0)
    assert np.allclose(out.acc, [[0.5, -9.81, 1.0]], atol=1e-6)
    assert out.gyr is not None
    assert np.allclose(out.gyr, [[math.pi / 2, 0.0, -math.pi / 4]], atol=1e-6)
    assert dec.feed(payload[:27], 2.1).t.shape == (0,)
    assert dec.stats.malformed == 1


def _movesense_full(ts_ms: int, acc: np.ndarray, gyr_dps: np.ndarray) -> bytes:
    return (
        b"\x02\x63"
        + struct.pack("<I", ts_ms)
        + acc.astype("<f4").tobytes()
        + gyr_dps.astype("<f4").tobytes()
    )


def test_movesense_two_part_reassembly() -> None:
    acc = np.arange(24, dtype=np.float64).reshape(8, 3)
    gyr = -np.arange(24, dtype=np.float64).reshape(8, 3)
    full = _movesense_full(1000, acc, gyr)
    assert len(full) == 198
    part1, part2 = full[:158], b"\x03\x63" + full[158:]
    dec = make_decoder("movesense-imu6")
    assert len(dec.feed(b"\x01\x63\x00\xc8", 0.0)) == 0  # command result: ignored
    assert len(dec.feed(part1, 0.1)) == 0
    out = dec.feed(part2, 0.1)
    assert np.allclose(out.acc, acc)
    assert out.gyr is not None
    assert np.allclose(out.gyr, gyr * DEG)
    assert np.allclose(np.diff(out.t), 1 / 104, rtol=1e-6)
    assert len(dec.feed(part2, 0.2)) == 0  # second part without a first: malformed
    assert len(dec.feed(b"\x02\x07" + full[2:], 0.2)) == 0  # other subscription: ignored
    assert (
        len(dec.feed(_movesense_full(1077, acc, gyr), 0.3)) == 8
    )  # whole packet in one notification (large MTU)
    s = dec.stats
    assert (s.frames, s.parts, s.malformed, s.ignored) == (2, 1, 1, 2)
    assert s.packets == s.frames + s.parts + s.malformed + s.ignored


def test_coach_sim_golden() -> None:
    payload = b"\x01\x34\x12\x02" + struct.pack("<12h", 2048, 0, -2048, 0, 0, 16384, *([0] * 6))
    out = make_decoder("coach-sim").feed(payload, 0.0)
    assert np.allclose(out.acc, np.array([[G, 0.0, -G], [0.0, 0.0, 0.0]]))
    assert out.gyr is not None
    assert np.allclose(out.gyr[0], [0, 0, 1000 * DEG])
    bad_version = b"\x02" + payload[1:]
    dec = make_decoder("coach-sim")
    assert len(dec.feed(bad_version, 0.0)) == 0 and dec.stats.malformed == 1
    assert len(dec.feed(payload[:-1], 0.0)) == 0 and dec.stats.malformed == 2


# -- WitMotion byte stream ------------------------------------------------------------------


def _wit_frames(n: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    raw = rng.integers(-30000, 30000, size=(n, 9)).astype("<i2")
    raw[raw == 0x6155] = 0  # keep the synthetic data free of false sync words
    frames = b"".join(b"\x55\x61" + r.tobytes() for r in raw)
    return frames, raw


def test_witmotion_split_and_joined_frames() -> None:
    rng = np.random.default_rng(1)
    stream, raw = _wit_frames(50, rng)
    cuts = np.sort(rng.choice(np.arange(1, len(stream)), size=70, replace=False))
    pieces = [stream[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(stream)], strict=True)]
    dec = make_decoder("witmotion-wt901ble")
    out = _cat([dec.feed(p, 0.01 * i) for i, p in enumerate(pieces)])
    scale = load_profile("witmotion-wt901ble").packet.acc.si_scale
    assert np.allclose(out.acc, raw[:, :3] * scale)
    assert out.index.tolist() == list(range(50))
    assert dec.stats.frames == 50 and dec.stats.resyncs == 0
    assert np.all(np.diff(out.t) > 0)


def test_witmotion_resync_after_garbage() -> None:
    rng = np.random.default_rng(2)
    stream, raw = _wit_frames(6, rng)
    noisy = stream[:40] + b"\x01\x02\x03" + stream[40:47] + stream[60:]
    dec = make_decoder("witmotion-wt901ble")
    out = _cat([dec.feed(noisy[i : i + 17], 0.01 * i) for i in range(0, len(noisy), 17)])
    scale = load_profile("witmotion-wt901ble").packet.acc.si_scale
    assert np.allclose(out.acc, raw[[0, 1, 3, 4, 5], :3] * scale)
    assert dec.stats.resyncs >= 1


# -- counters, timestamps, gaps ----------------------------------------------------------------


def _sim_packets(n_samples: int, start_counter: int = 0, rate: float = 200.0) -> list[bytes]:
    p = load_profile("coach-sim")
    t = np.arange(n_samples) / rate
    z = np.zeros((n_samples, 3))
    return encode(p, t, z, z, start_counter=start_counter)


def _feed_packets(dec: Decoder, packets: list[bytes], spp: int, rate: float) -> DecodedSamples:
    host = [(i + 1) * spp / rate + 0.002 for i in range(len(packets))]
    return _cat([dec.feed(p, h) for p, h in zip(packets, host, strict=True)])


def test_counter_wraparound_is_seamless() -> None:
    packets = _sim_packets(400, start_counter=65530)
    dec = make_decoder("coach-sim")
    out = _feed_packets(dec, packets, 4, 200.0)
    assert out.index.tolist() == list(range(400))
    assert dec.stats.lost_samples == 0 and dec.stats.resyncs == 0


def test_counter_gaps_duplicates_and_reordering() -> None:
    packets = _sim_packets(400, start_counter=65000)
    host = [(i + 1) * 0.02 + 0.002 for i in range(100)]
    dec = make_decoder("coach-sim")
    order = [*range(0, 10), 9, 9, *range(12, 20), 25, 24, *range(26, 100)]  # dup, gap, swap
    outs = [dec.feed(packets[i], host[i]) for i in order]
    out = _cat(outs)
    s = dec.stats
    assert s.duplicates == 2 and s.out_of_order == 1
    assert s.lost_samples == 4 * (2 + 5)  # packets 10, 11 and 20..24 never accepted
    assert np.all(np.diff(out.index) > 0)
    assert np.all(np.diff(out.t) > 0)
    assert s.packets == s.frames + s.malformed + s.ignored


def test_gap_longer_than_counter_wrap_uses_host_time() -> None:
    p = load_profile("coach-sim")
    index = np.r_[np.arange(8), 70000 + np.arange(8)]
    t = index / 200.0
    z = np.zeros((16, 3))
    packets = encode(p, t, z, z, index=index)
    dec = make_decoder("coach-sim")
    outs = [dec.feed(pk, float(t[4 * i + 3]) + 0.003) for i, pk in enumerate(packets)]
    out = _cat(outs)
    assert out.index.tolist() == index.tolist()
    assert dec.stats.lost_samples == 70000 - 8


def test_sensor_restart_resyncs() -> None:
    first, second = _sim_packets(40, 30000), _sim_packets(40, 0)
    dec = make_decoder("coach-sim")
    outs = [dec.feed(pk, 0.02 * (i + 1)) for i, pk in enumerate(first + second)]
    out = _cat(outs)
    assert dec.stats.resyncs == 1
    assert len(out) == 80 and np.all(np.diff(out.t) > 0) and np.all(np.diff(out.index) > 0)


def test_movella_timestamp_wraparound_and_gap() -> None:
    p = load_profile("movella-dot")
    n = 300
    sensor = 4294.0 + np.arange(n) / 60.0  # crosses 2**32 µs = 4294.967 s
    z = np.zeros((n, 3))
    packets = encode(p, sensor - 4294.0, z, z, sensor_time=sensor)
    keep = [i for i in range(n) if i not in (100, 101, 102)]
    dec = make_decoder("movella-dot")
    out = _cat([dec.feed(packets[i], i / 60.0 + 0.005) for i in keep])
    assert out.index.tolist() == keep
    assert dec.stats.lost_samples == 3 and dec.stats.resyncs == 0
    assert np.allclose(np.diff(out.t)[:90], 1 / 60.0, atol=2e-4)


def test_movesense_timestamp_gap() -> None:
    p = load_profile("movesense-imu6")
    n = 8 * 40
    t = 12.0 + np.arange(n) / 104.0
    z = np.zeros((n, 3))
    notes = encode(p, t, z, z)
    assert len(notes) == 80
    dropped = {20, 21}  # both parts of packet 10
    dec = make_decoder("movesense-imu6")
    out = _cat(
        [dec.feed(b, (i // 2) * 8 / 104 + 0.01) for i, b in enumerate(notes) if i not in dropped]
    )
    assert dec.stats.lost_samples == 8
    assert out.index.tolist() == [i for i in range(n) if not 80 <= i < 88]


# -- clock reconstruction ---------------------------------------------------------------------


def _arrivals(true_last: np.ndarray, seed: int) -> np.ndarray:
    return true_last + np.random.default_rng(seed).uniform(0.0, 0.030, size=true_last.shape)


@pytest.mark.parametrize(
    ("name", "ppm"), [("coach-sim", 100.0), ("coach-sim", -300.0), ("witmotion-wt901ble", 100.0)]
)
def test_drift_estimation_index_formats(name: str, ppm: float) -> None:
    p = load_profile(name)
    rate = p.rates.default_hz
    n = int(60 * rate)
    true_t = 3.0 + np.arange(n) / (rate * (1 + ppm * 1e-6))  # sensor `ppm` fast
    z = np.zeros((n, 3))
    packets = encode(p, true_t, z, z)
    spp = n // len(packets)
    host = _arrivals(true_t[spp - 1 :: spp], seed=3)
    dec = Decoder(p)
    out = _cat([dec.feed(b, h) for b, h in zip(packets, host, strict=True)])
    err = out.t - true_t[out.index]
    assert np.all(np.diff(out.t) > 0)
    late = out.t > 3.0 + 20.0
    assert np.max(np.abs(err[late])) < 2e-3
    assert dec.clock.drift == pytest.approx(-ppm * 1e-6, abs=30e-6)
    assert dec.stats.lost_samples == 0


def test_drift_estimation_sensor_timestamps() -> None:
    p = load_profile("movella-dot")
    n = 60 * 60
    true_t = 1.0 + np.arange(n) / 60.0
    sensor = 500.0 + (true_t - 1.0) * (1 - 250e-6)  # sensor clock 250 ppm slow
    z = np.zeros((n, 3))
    packets = encode(p, true_t, z, z, sensor_time=sensor)
    dec = Decoder(p)
    out = _cat([dec.feed(b, h) for b, h in zip(packets, _arrivals(true_t, 4), strict=True)])
    err = out.t - true_t
    assert np.max(np.abs(err[true_t > 21.0])) < 2e-3


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_round_trip(name: str) -> None:
    p = load_profile(name)
    rng = np.random.default_rng(5)
    n = 8 * 12
    t = np.arange(n) / p.rates.default_hz
    acc = rng.uniform(-0.9, 0.9, (n, 3)) * p.packet.acc.full_scale_si
    assert p.packet.gyr is not None
    gyr = rng.uniform(-0.9, 0.9, (n, 3)) * p.packet.gyr.full_scale_si
    dec = Decoder(p)
    out = _cat([dec.feed(b, 0.01 * i) for i, b in enumerate(encode(p, t, acc, gyr))])
    assert out.gyr is not None and len(out) == n
    for got, want, f in ((out.acc, acc, p.packet.acc), (out.gyr, gyr, p.packet.gyr)):
        step = f.si_scale if np.dtype(f.dtype).kind == "i" else 1e-6 * f.full_scale_si
        assert np.max(np.abs(got - want)) <= 0.5 * step + 1e-12
    out.to_block(Location.PELVIS)


@pytest.mark.parametrize("name", PROFILES)
def test_saturation_clips(name: str) -> None:
    p = load_profile(name)
    t = np.arange(8) / p.rates.default_hz
    big = np.full((8, 3), 1e6)
    out = _cat([Decoder(p).feed(b, 0.0) for b in encode(p, t, big, -big)])
    assert np.all(out.acc <= p.packet.acc.full_scale_si * (1 + 1e-6))
    assert out.gyr is not None and p.packet.gyr is not None
    assert np.all(out.gyr >= -p.packet.gyr.full_scale_si * (1 + 1e-6))


# -- fuzzing ---------------------------------------------------------------------------------


def _valid_notes(p: FirmwareProfile) -> list[bytes]:
    n = 8 * 6
    t = np.arange(n) / p.rates.default_hz
    rng = np.random.default_rng(7)
    return encode(p, t, rng.normal(0, 9, (n, 3)), rng.normal(0, 2, (n, 3)))


_ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("valid"), st.integers(0, 200)),
        st.tuples(st.just("dup"), st.integers(0, 200)),
        st.tuples(st.just("trunc"), st.integers(0, 200)),
        st.tuples(st.just("join"), st.integers(0, 200)),
        st.tuples(st.just("random"), st.binary(max_size=250)),
    ),
    max_size=40,
)


@pytest.mark.parametrize("name", PROFILES)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=_ACTIONS, host_steps=st.lists(st.floats(-0.05, 2.0), min_size=1, max_size=5))
def test_fuzz_never_raises_and_counts_add_up(
    name: str, actions: list[tuple[str, object]], host_steps: list[float]
) -> None:
    p = load_profile(name)
    notes = _valid_notes(p)
    dec = Decoder(p)
    host, total, times = 0.0, 0, []
    cursor = 0
    for k, (kind, arg) in enumerate(actions):
        if isinstance(arg, bytes):
            payload = arg
        else:
            i = (
                (cursor + int(str(arg)) % 3) % len(notes)
                if kind == "valid"
                else int(str(arg)) % len(notes)
            )
            payload = notes[i]
            if kind == "valid":
                cursor = i + 1
            elif kind == "trunc":
                payload = payload[: int(str(arg)) % max(1, len(payload))]
            elif kind == "join":
                payload = payload + notes[(i + 1) % len(notes)]
        host += host_steps[k % len(host_steps)]
        out = dec.feed(payload, host)
        total += len(out)
        times.append(out.t)
        assert out.acc.shape == (len(out), 3)
        assert out.index.shape == (len(out),)
        assert np.all(np.isfinite(out.acc))
    s = dec.stats
    assert s.samples == total
    assert s.packets == len(actions)
    if p.packet.framing == "notification":
        assert s.packets == s.frames + s.parts + s.malformed + s.ignored
    all_t = np.concatenate(times) if times else np.zeros(0)
    assert np.all(np.diff(all_t) > 0)
