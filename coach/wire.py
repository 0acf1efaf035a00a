"""Vectorised decoders and encoders of sensor notifications, driven by a firmware profile.

Decoding (:class:`Decoder`, one per sensor) turns each notification into SI samples with session
times. Work is per notification with numpy (no per-sample Python loop):

1. Framing: whole notifications, a byte stream of fixed frames resynced on their header
   (WitMotion ``55 61``), or two-part packets reassembled (Movesense GSP type 2 + type 3).
2. Parsing: a structured numpy dtype over the samples (interleaved) or one block per quantity
   (planar); raw × ``si_scale`` gives m/s² and rad/s.
3. Sequencing: counters and timestamps are unwrapped (``2**bits``) using the host arrival time to
   pick the wrap, so even gaps longer than a wrap period are sized right. Duplicates and
   out-of-order packets are dropped and counted, gaps are counted in ``lost_samples`` and stay
   gaps (the sample index jumps), a large backwards jump (sensor restart) is a resync.
4. Timing (:class:`ClockEstimator`): BLE only ever delays a notification, so host arrival
   ``h ≈ c + (1 + d)·x + delay`` with ``delay ≥ 0``, where ``x`` is the sensor-side time of the
   packet's last sample (its timestamp, or index / nominal rate). Offset ``c`` is a lower
   envelope (it drops at once when a packet arrives earlier than predicted) and drift ``d`` is a
   Theil–Sen slope through per-window minima of ``h − x`` (1 s windows, last 30 windows), the
   causal lower-envelope idea of clock-skew estimation (Moon, Skelly & Towsley, "Estimation and
   removal of clock skew from network delay measurements", INFOCOM 1999). Sample times are
   ``c + (1 + d)·x``: arrival jitter does not become sample-time jitter. Times are kept strictly
   increasing: after a downward correction samples are spaced at least half a period apart
   until the estimate is caught up.

Nothing in :meth:`Decoder.feed` raises on bad input: malformed, truncated, random, duplicated or
reordered notifications are counted in :class:`DecoderStats` and skipped.

Encoding (:func:`encode`) produces the notifications the real device would send for given SI
samples: quantised, clipped at the measuring range, with counters/timestamps, split into parts
where the device splits them. ``decode(encode(x)) ≈ x`` within one quantisation step.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from coach.profiles import FirmwareProfile, PacketLayout, VectorField, load_profile
from coach.types import FloatArray, Location, SampleBlock

IntArray = NDArray[np.int64]

_EMPTY_T: FloatArray = np.zeros(0, dtype=np.float64)
_EMPTY_V: FloatArray = np.zeros((0, 3), dtype=np.float64)
_EMPTY_I: IntArray = np.zeros(0, dtype=np.int64)
for _a in (_EMPTY_T, _EMPTY_V, _EMPTY_I):
    _a.flags.writeable = False


@dataclass(frozen=True, slots=True)
class DecodedSamples:
    """Samples decoded from one notification (possibly none).

    Attributes:
        t: session time of each sample, s, shape (n,), strictly increasing across calls.
        acc: specific force, m/s², shape (n, 3), sensor frame.
        gyr: angular rate, rad/s, shape (n, 3); None when the profile has no gyroscope.
        index: sample index since the first sample, shape (n,); jumps over lost samples.

    """

    t: FloatArray
    acc: FloatArray
    gyr: FloatArray | None
    index: IntArray

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def to_block(self, location: Location) -> SampleBlock:
        """The samples as a :class:`~coach.types.SampleBlock` of ``location``."""
        return SampleBlock(location, self.t, self.acc, self.gyr)


@dataclass(slots=True)
class DecoderStats:
    """Counters of one decoder.

    Every notification ends as exactly one of ``frames`` (whole packet decoded; for byte
    streams each frame counts), ``parts`` (first part stored for reassembly), ``malformed`` or
    ``ignored`` (a non-data reply such as a command result).
    """

    packets: int = 0
    frames: int = 0
    parts: int = 0
    samples: int = 0
    malformed: int = 0
    ignored: int = 0
    resyncs: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    lost_samples: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


class ClockEstimator:
    """Maps sensor-side time ``x`` (s) to host/session time: ``t = c + (1 + d)·x``.

    Args:
        window_s: length of the windows whose minimum of ``h − x`` feeds the drift fit, s.
        n_windows: how many window minima are kept (memory and fit span).
        max_drift: bound of ``|d|`` (0.02 = 2 %, far beyond crystal drift of ±500 ppm).
        min_step_fraction: least spacing of consecutive output times, fraction of ``Δx``.

    """

    def __init__(
        self,
        window_s: float = 1.0,
        n_windows: int = 30,
        max_drift: float = 0.02,
        min_step_fraction: float = 0.5,
    ) -> None:
        self.window_s = window_s
        self.max_drift = max_drift
        self.min_step_fraction = min_step_fraction
        self._minima: deque[tuple[float, float]] = deque(maxlen=n_windows)
        self.offset_s: float | None = None
        self.drift: float = 0.0
        self.delay_s: float = 0.0
        self._win_start = 0.0
        self._win_min = math.inf
        self._win_x = 0.0
        self._last_t = -math.inf
        self._last_x: float | None = None

    def residual(self, x: float, host: float) -> float:
        """Arrival delay of a packet whose last sample is at ``x`` under the current estimate."""
        if self.offset_s is None:
            return 0.0
        return host - (self.offset_s + (1.0 + self.drift) * x)

    def observe(self, x_last: float, host: float) -> None:
        """Take one packet: its last sample at sensor time ``x_last`` arrived at ``host``."""
        m = host - x_last
        if self.offset_s is None:
            self.offset_s = m
            self._win_start, self._win_min, self._win_x = x_last, m, x_last
            return
        if x_last - self._win_start >= self.window_s:
            if math.isfinite(self._win_min):
                self._minima.append((self._win_x, self._win_min))
            self._win_start, self._win_min = x_last, math.inf
            self._refit()
        if m < self._win_min:
            self._win_min, self._win_x = m, x_last
        r = self.residual(x_last, host)
        if r < 0.0:
            self.offset_s += r
        else:
            self.delay_s += 0.05 * (r - self.delay_s)

    def _refit(self) -> None:
        if len(self._minima) < 2:
            return
        pts = np.asarray(self._minima)
        xs, ms = pts[:, 0], pts[:, 1]
        i, j = np.triu_indices(len(xs), k=1)
        dx = xs[j] - xs[i]
        ok = dx > 0.5 * self.window_s
        if not ok.any():
            return
        slope = float(np.median((ms[j] - ms[i])[ok] / dx[ok]))
        self.drift = min(max(slope, -self.max_drift), self.max_drift)
        c = float(np.min(ms - self.drift * xs))
        if math.isfinite(self._win_min):
            c = min(c, self._win_min - self.drift * self._win_x)
        self.offset_s = c

    def times(self, x: FloatArray) -> FloatArray:
        """Session times of samples at sensor times ``x`` (increasing), strictly increasing."""
        c = self.offset_s if self.offset_s is not None else 0.0
        t = c + (1.0 + self.drift) * x
        if self._last_x is not None:
            t = np.maximum(t, self._last_t + (x - self._last_x) * self.min_step_fraction)
        if t.shape[0]:
            self._last_t, self._last_x = float(t[-1]), float(x[-1])
        return t


def _triplet_dtype(f: VectorField) -> tuple[str, tuple[int]]:
    return (f.dtype, (3,))


class _Parser:
    """Turns one whole packet (bytes) into raw sample arrays; None when malformed."""

    def __init__(self, layout: PacketLayout) -> None:
        self.layout = layout
        self.header = layout.header_bytes
        vec = [("acc", layout.acc)] + ([("gyr", layout.gyr)] if layout.gyr is not None else [])
        self.vectors = vec
        self.sample_dtype = np.dtype(
            {
                "names": [n for n, _ in vec],
                "formats": [_triplet_dtype(f) for _, f in vec],
                "offsets": [f.offset for _, f in vec],
                "itemsize": layout.sample_bytes,
            }
        )
        self.frame_dtype = self.sample_dtype
        if layout.frame_bytes is not None:
            self.frame_dtype = np.dtype(
                {
                    "names": [n for n, _ in vec],
                    "formats": [_triplet_dtype(f) for _, f in vec],
                    "offsets": [layout.samples_offset + f.offset for _, f in vec],
                    "itemsize": layout.frame_bytes,
                }
            )
        self.check_finite = any(np.dtype(f.dtype).kind == "f" for _, f in vec)
        seq = layout.counter or layout.timestamp
        self.seq_offset = seq.offset if seq is not None else None
        self.seq_size = np.dtype(seq.dtype).itemsize if seq is not None else 0

    def count(self, data: bytes) -> int | None:
        """Samples in a packet of this length, or None when the length/header is wrong."""
        lay = self.layout
        if len(data) < lay.samples_offset or not data.startswith(self.header):
            return None
        if lay.count_from == "fixed":
            n = lay.samples_per_packet
        elif lay.count_from == "field":
            off = lay.count_offset or 0
            size = 1 if lay.count_dtype == "u1" else 2
            if len(data) < off + size:
                return None
            n = int.from_bytes(data[off : off + size], "little")
            if not 1 <= n <= lay.max_samples_per_packet:
                return None
        else:
            body = len(data) - lay.samples_offset
            n = body // lay.sample_bytes
            if n < 1 or n > lay.max_samples_per_packet or body % lay.sample_bytes:
                return None
        need = lay.packet_bytes(n)
        longest = max(need, lay.pad_to or 0)
        if not need <= len(data) <= longest:
            return None
        return n

    def vectors_of(self, data: bytes, n: int) -> dict[str, FloatArray] | None:
        """SI arrays (n, 3) of every quantity, or None when a value is not finite."""
        lay = self.layout
        out: dict[str, FloatArray] = {}
        if lay.sample_layout == "interleaved":
            rec = np.frombuffer(data, dtype=self.sample_dtype, count=n, offset=lay.samples_offset)
            for name, f in self.vectors:
                out[name] = np.multiply(rec[name], f.si_scale, dtype=np.float64)
        else:
            for name, f in self.vectors:
                raw = np.frombuffer(
                    data, dtype=f.dtype, count=3 * n, offset=lay.samples_offset + n * f.offset
                )
                out[name] = np.multiply(raw, f.si_scale, dtype=np.float64).reshape(n, 3)
        if self.check_finite and not all(np.isfinite(v).all() for v in out.values()):
            return None
        return out

    def frames_of(self, block: NDArray[np.uint8]) -> dict[str, FloatArray] | None:
        """SI arrays of k byte-stream frames given as a (k, frame_bytes) array."""
        rec = np.ascontiguousarray(block).view(self.frame_dtype).reshape(-1)
        out = {n: np.multiply(rec[n], f.si_scale, dtype=np.float64) for n, f in self.vectors}
        if self.check_finite and not all(np.isfinite(v).all() for v in out.values()):
            return None
        return out

    def seq_value(self, data: bytes) -> int | None:
        """The raw counter/timestamp of a packet (None when the format has neither)."""
        if self.seq_offset is None:
            return None
        return int.from_bytes(data[self.seq_offset : self.seq_offset + self.seq_size], "little")


class Decoder:
    """Stateful decoder of one sensor's notifications (see the module docstring).

    Args:
        profile: the sensor's firmware profile.
        rate_hz: configured sample rate (the profile default when None).
        gap_infer_s: for formats without counter or timestamp, an arrival later than predicted
            by more than this is taken as lost samples (s).
        reorder_window_s: a counter/timestamp further back than this is a sensor restart
            (resync) rather than an out-of-order packet (s).

    """

    def __init__(
        self,
        profile: FirmwareProfile,
        rate_hz: float | None = None,
        *,
        gap_infer_s: float = 0.25,
        reorder_window_s: float = 2.0,
    ) -> None:
        self.profile = profile
        self.rate_hz = profile.check_rate(rate_hz)
        self.layout = profile.packet
        self.gap_infer_s = gap_infer_s
        self.reorder_window_s = reorder_window_s
        self._parser = _Parser(self.layout)
        ts = self.layout.timestamp
        ct = self.layout.counter
        self._mode: Literal["timestamp", "counter", "none"] = (
            "timestamp" if ts is not None else "counter" if ct is not None else "none"
        )
        self._tick_s = ts.tick_s if ts is not None else 1.0 / self.rate_hz
        bits = ts.bits if ts is not None else ct.bits if ct is not None else 0
        self._modulus = 1 << bits if bits else 0
        self._nominal_ticks = 1.0 / (self.rate_hz * self._tick_s)
        self._first_ref = ts is None or ts.refers_to == "first"
        self.reset()

    def reset(self) -> None:
        """Forget everything (new connection)."""
        self.stats = DecoderStats()
        self.clock = ClockEstimator()
        self._buf = bytearray()
        self._pending: bytes | None = None
        self._started = False
        self._next_index = 0
        self._last_value = 0
        self._last_n = 0
        self._last_host = 0.0
        self._ticks = 0.0  # unwrapped seq value (ticks) of the last accepted packet
        self._ticks_per_sample = self._nominal_ticks

    # -- public ---------------------------------------------------------------------------

    def feed(self, payload: bytes, host_time_s: float) -> DecodedSamples:
        """Decode one notification that arrived at ``host_time_s`` (session time, s)."""
        self.stats.packets += 1
        host = float(host_time_s) if math.isfinite(host_time_s) else self._last_host
        data = bytes(payload)
        if self.layout.framing == "byte_stream":
            return self._feed_stream(data, host)
        rea = self.layout.reassembly
        if rea is not None:
            whole = self._reassemble(data)
            if whole is None:
                return self._empty()
            data = whole
        n = self._parser.count(data)
        vecs = self._parser.vectors_of(data, n) if n is not None else None
        if n is None or vecs is None:
            self.stats.malformed += 1
            return self._empty()
        self.stats.frames += 1
        return self._sequence(vecs, n, self._parser.seq_value(data), host)

    # -- framing --------------------------------------------------------------------------

    def _reassemble(self, data: bytes) -> bytes | None:
        rea = self.layout.reassembly
        assert rea is not None
        need = max(rea.type_offset, rea.ref_offset or 0) + 1
        if len(data) < need:
            self.stats.malformed += 1
            return None
        if rea.ref is not None and rea.ref_offset is not None and data[rea.ref_offset] != rea.ref:
            self.stats.ignored += 1
            return None
        kind = data[rea.type_offset]
        if kind == rea.first_type:
            if len(data) >= self.layout.packet_bytes(self.layout.samples_per_packet):
                self._pending = None
                return data
            self._pending = data
            self.stats.parts += 1
            return None
        if kind == rea.continuation_type:
            if self._pending is None:
                self.stats.malformed += 1
                return None
            whole = self._pending + data[rea.header_bytes :]
            self._pending = None
            return whole
        self.stats.ignored += 1
        return None

    def _feed_stream(self, data: bytes, host: float) -> DecodedSamples:
        lay = self.layout
        size = lay.frame_bytes or 0
        head = self._parser.header
        buf = self._buf
        buf += data
        arr = np.frombuffer(bytes(buf), dtype=np.uint8)
        k = len(buf) // size
        if k and len(buf) == k * size:
            block = arr.reshape(k, size)
            if bool((block[:, : len(head)] == np.frombuffer(head, np.uint8)).all()):
                self._buf = bytearray()
                return self._stream_frames(block, host)
        starts: list[int] = []
        i = 0
        while True:
            j = buf.find(head, i)
            if j < 0:
                keep = max(i, len(buf) - (len(head) - 1))
                if keep > i:
                    self.stats.resyncs += 1
                self._buf = buf[keep:]
                break
            if j > i:
                self.stats.resyncs += 1
            if j + size > len(buf):
                self._buf = buf[j:]
                break
            inner = buf.find(head, j + 1, j + size + len(head) - 1)
            confirmed = buf[j + size : j + size + len(head)] == head
            if 0 <= inner < j + size and not confirmed:
                # A header inside this frame and none after it: the frame was cut short
                # (a notification was lost); the inner header starts the next real frame.
                self.stats.resyncs += 1
                i = inner
                continue
            starts.append(j)
            i = j + size
        if not starts:
            return self._empty()
        idx = np.asarray(starts, dtype=np.intp)[:, None] + np.arange(size, dtype=np.intp)
        return self._stream_frames(arr[idx], host)

    def _stream_frames(self, block: NDArray[np.uint8], host: float) -> DecodedSamples:
        vecs = self._parser.frames_of(block)
        if vecs is None:
            self.stats.malformed += 1
            return self._empty()
        self.stats.frames += block.shape[0]
        return self._sequence(vecs, block.shape[0], None, host)

    # -- sequencing and timing ------------------------------------------------------------

    def _sequence(
        self, vecs: dict[str, FloatArray], n: int, value: int | None, host: float
    ) -> DecodedSamples:
        rate = self.rate_hz
        if not self._started:
            self._started = True
            first = 0
            self._ticks = 0.0
        elif self._mode == "none":
            first = self._next_index
            x_last = (first + n - 1) / rate
            late = self.clock.residual(x_last, host) - self.clock.delay_s
            if late > self.gap_infer_s:
                lost = round(late * rate)
                first += lost
                self.stats.lost_samples += lost
        else:
            assert value is not None
            placed = self._place(value, host)
            if placed is None:
                return self._empty()
            first = placed
        self._last_value = value if value is not None else 0
        self._last_n = n
        self._last_host = host
        self._next_index = first + n
        index = np.arange(first, first + n, dtype=np.int64)
        if self._mode == "timestamp":
            step = self._ticks_per_sample * self._tick_s
            x0 = self._ticks * self._tick_s
            if not self._first_ref:
                x0 -= (n - 1) * step
            x = x0 + step * np.arange(n, dtype=np.float64)
        else:
            x = index / rate
        self.clock.observe(float(x[-1]), host)
        t = self.clock.times(x)
        self.stats.samples += n
        return DecodedSamples(t, vecs["acc"], vecs.get("gyr"), index)

    def _place(self, value: int, host: float) -> int | None:
        """Index of the first sample of an accepted packet; None when it is dropped."""
        mod = self._modulus
        per = self._ticks_per_sample
        dt_host = max(0.0, host - self._last_host)
        expect = dt_host / self._tick_s
        delta = (value - self._last_value) % mod
        full = delta + round((expect - delta) / mod) * mod
        if full == 0:
            self.stats.duplicates += 1
            return None
        lost = round(full / per - self._last_n)
        plausible = (
            dt_host * self.rate_hz - self._last_n + max(0.5 * self.rate_hz, 4 * self._last_n)
        )
        if lost < 0 and full >= -self.reorder_window_s / self._tick_s:
            self.stats.out_of_order += 1
            return None
        if lost < 0 or lost > plausible:
            # Sensor restart or corrupt counter: re-anchor on the host clock.
            self.stats.resyncs += 1
            advance = max(self._last_n * per, expect)
            self._ticks += advance
            return self._next_index + max(0, round(advance / per) - self._last_n)
        if lost == 0 and self._mode == "timestamp" and self._last_n:
            observed = full / self._last_n
            nominal = self._nominal_ticks
            per += 0.02 * (observed - per)
            self._ticks_per_sample = min(max(per, 0.95 * nominal), 1.05 * nominal)
        self._ticks += full
        self.stats.lost_samples += lost
        return self._next_index + lost

    def _empty(self) -> DecodedSamples:
        return DecodedSamples(
            _EMPTY_T, _EMPTY_V, _EMPTY_V if self.profile.has_gyro else None, _EMPTY_I
        )


def make_decoder(profile: FirmwareProfile | str, rate_hz: float | None = None) -> Decoder:
    """A fresh decoder for one sensor speaking ``profile`` (a profile or its name) at a rate."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    return Decoder(prof, rate_hz)


# -- encoding ---------------------------------------------------------------------------------


def _quantise(values: FloatArray, f: VectorField) -> NDArray[np.generic]:
    """SI values -> raw values of ``f.dtype``, rounded and clipped at the measuring range."""
    raw = np.asarray(values, dtype=np.float64) / f.si_scale
    limit = f.full_scale / f.scale
    dt = np.dtype(f.dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.clip(np.rint(raw), max(info.min, -limit), min(info.max, limit)).astype(dt)
    return np.clip(np.nan_to_num(raw), -limit, limit).astype(dt)


def _chunks(index: IntArray, size: int, fixed: bool) -> list[tuple[int, int]]:
    """(start, stop) of each packet: ``size`` samples, and (when not fixed) no index gap inside."""
    n = index.shape[0]
    if fixed:
        return [(s, s + size) for s in range(0, n - size + 1, size)]
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    out: list[tuple[int, int]] = []
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, n], strict=True):
        out.extend((s, min(s + size, int(hi))) for s in range(int(lo), int(hi), size))
    return out


def encode(
    profile: FirmwareProfile,
    t: FloatArray,
    acc: FloatArray,
    gyr: FloatArray | None = None,
    *,
    index: IntArray | None = None,
    sensor_time: FloatArray | None = None,
    samples_per_packet: int | None = None,
    start_counter: int = 0,
) -> list[bytes]:
    """Notifications the device would send for these samples, in order.

    Args:
        profile: the firmware profile.
        t: sample times, s, shape (n,) (the sensor clock unless ``sensor_time`` is given).
        acc: specific force, m/s², shape (n, 3); clipped at the measuring range.
        gyr: angular rate, rad/s, shape (n, 3); required when the profile has a gyroscope.
        index: sample index of each sample (default ``0..n-1``); counters are
            ``(start_counter + index) mod 2**bits``. Variable-count formats start a new packet at
            an index gap; fixed-count formats take samples in order (drop whole notifications to
            simulate loss).
        sensor_time: the sensor clock of each sample, s, for timestamp formats (default ``t``).
        samples_per_packet: samples per notification (variable-count formats only).
        start_counter: counter value of index 0.

    Trailing samples that do not fill a fixed-count packet are not sent.

    """
    lay = profile.packet
    n = int(np.shape(t)[0])
    if np.shape(acc) != (n, 3):
        raise ValueError(f"acc must have shape ({n}, 3)")
    if lay.gyr is not None and (gyr is None or np.shape(gyr) != (n, 3)):
        raise ValueError(f"profile {profile.name} needs gyr of shape ({n}, 3)")
    idx = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    clock = np.asarray(t if sensor_time is None else sensor_time, dtype=np.float64)
    size = lay.samples_per_packet
    fixed = lay.count_from == "fixed"
    if samples_per_packet is not None:
        if fixed and samples_per_packet != size:
            raise ValueError(f"profile {profile.name} sends exactly {size} samples per packet")
        size = samples_per_packet
    if not 1 <= size <= lay.max_samples_per_packet:
        raise ValueError(f"samples_per_packet must be 1..{lay.max_samples_per_packet}")

    parser = _Parser(lay)
    quant = {"acc": _quantise(acc, lay.acc)}
    if lay.gyr is not None and gyr is not None:
        quant["gyr"] = _quantise(gyr, lay.gyr)
    records = np.zeros(n, dtype=parser.sample_dtype)
    for name, values in quant.items():
        records[name] = values

    out: list[bytes] = []
    for lo, hi in _chunks(idx, size, fixed):
        m = hi - lo
        pkt = bytearray(lay.packet_bytes(m))
        pkt[: len(parser.header)] = parser.header
        if lay.count_from == "field" and lay.count_offset is not None:
            width = 1 if lay.count_dtype == "u1" else 2
            pkt[lay.count_offset : lay.count_offset + width] = m.to_bytes(width, "little")
        if lay.counter is not None:
            value = (start_counter + int(idx[lo])) % (1 << lay.counter.bits)
            _put(pkt, lay.counter.offset, lay.counter.dtype, value)
        if lay.timestamp is not None:
            ts = lay.timestamp
            at = clock[lo] if ts.refers_to == "first" else clock[hi - 1]
            _put(pkt, ts.offset, ts.dtype, round(float(at) / ts.tick_s) % (1 << ts.bits))
        so = lay.samples_offset
        if lay.sample_layout == "interleaved":
            pkt[so : so + m * lay.sample_bytes] = records[lo:hi].tobytes()
        else:
            for name, values in quant.items():
                f = lay.acc if name == "acc" else lay.gyr
                assert f is not None
                start = so + m * f.offset
                pkt[start : start + f.nbytes * m] = np.ascontiguousarray(values[lo:hi]).tobytes()
        if lay.framing == "byte_stream" and lay.frame_bytes is not None:
            pkt.extend(bytes(max(0, lay.frame_bytes - len(pkt))))
        if lay.pad_to is not None and len(pkt) < lay.pad_to:
            pkt.extend(bytes(lay.pad_to - len(pkt)))
        out.extend(_split(bytes(pkt), lay))
    return out


def _put(pkt: bytearray, offset: int, dtype: str, value: int) -> None:
    size = np.dtype(dtype).itemsize
    pkt[offset : offset + size] = int(value).to_bytes(size, "little")


def _split(pkt: bytes, lay: PacketLayout) -> list[bytes]:
    """The notifications of one packet: itself, or two parts for a reassembly format."""
    rea = lay.reassembly
    if rea is None or len(pkt) <= rea.max_part_bytes:
        return [pkt]
    head = bytearray(rea.header_bytes)
    if rea.type_offset < rea.header_bytes:
        head[rea.type_offset] = rea.continuation_type
    if rea.ref_offset is not None and rea.ref is not None and rea.ref_offset < rea.header_bytes:
        head[rea.ref_offset] = rea.ref
    return [pkt[: rea.max_part_bytes], bytes(head) + pkt[rea.max_part_bytes :]]
