"""Raw MCAP recordings: round trip, truncation at any byte, SIGKILL mid-run, foreign files."""

from __future__ import annotations

import json
import math
import os
import random
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer

import coach
from coach.errors import RecordingError, SessionFormatError
from coach.sinks import recorder as rec_mod
from coach.sinks.recorder import ProfileText, Recorder
from coach.sources import recording as read_mod
from coach.sources.recording import RawPacket, open_recording
from coach.types import (
    Cue,
    EventKind,
    GaitEvent,
    Location,
    QualityChange,
    QualityFlag,
    SampleBlock,
    Side,
    Stride,
)

REPO = Path(__file__).resolve().parents[1]
LOCS = ("pelvis", "left_shank", "right_shank")
CONFIG = '[athlete]\nname = "ana"\n\n[recording]\nflush_interval_s = 0.5\n'
PROFILES = {
    "pelvis": ProfileText("witmotion-wt901ble", 'name = "witmotion-wt901ble"\n'),
    "left_shank": ProfileText("movesense", 'name = "movesense"\n'),
    "right_shank": ProfileText("movesense", 'name = "movesense"\n'),
}


class FakeClock:
    """A monotonic clock the test moves by hand, s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _packets(n: int, seed: int = 1) -> list[RawPacket]:
    """n packets per location, interleaved, random payloads of 0..244 bytes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for k, loc in enumerate(LOCS):
            t = i * 0.01 + k * 1e-3 + rng.random() * 1e-4
            size = rng.choice((0, 1, 18, 20, 244, rng.randrange(245)))
            out.append(RawPacket(Location(loc), t, rng.randbytes(size)))
    return out


def _record(path: Path, packets: list[RawPacket], clock: FakeClock | None = None) -> None:
    clock = clock or FakeClock()
    with Recorder(
        path,
        CONFIG,
        PROFILES,
        0.5,
        fsync=False,
        start_wall_ns=1_700_000_000_000_000_000,
        clock=clock,
    ) as rec:
        for p in packets:
            clock.now = p.host_time_s
            rec.write_raw(p.location, p.host_time_s, p.payload)


def test_format_constants_agree() -> None:
    for name in (
        "FORMAT",
        "SESSION_METADATA",
        "MCAP_PROFILE",
        "RAW_ENCODING",
        "CONFIG_ATTACHMENT",
        "PROFILE_ATTACHMENT_PREFIX",
    ):
        assert getattr(rec_mod, name) == getattr(read_mod, name), name


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    packets = _packets(400)
    _record(path, packets)

    recording = open_recording(path)
    assert not recording.truncated
    assert list(recording.iter_raw()) == packets
    assert recording.config_toml == CONFIG
    assert recording.software_version == coach.__version__
    assert recording.start_wall_ns == 1_700_000_000_000_000_000
    assert recording.start_time is not None and recording.start_time.year == 2023
    assert {loc: s.profile for loc, s in recording.sensors.items()} == {
        Location(loc): p.name for loc, p in PROFILES.items()
    }
    assert recording.sensors[Location.LEFT_SHANK].profile_toml == PROFILES["left_shank"].toml
    assert recording.profiles == {p.name: p.toml for p in PROFILES.values()}
    only = list(recording.iter_raw(locations={"pelvis"}))
    assert only == [p for p in packets if p.location == "pelvis"]

    summary = recording.summary()
    for loc in LOCS:
        mine = [p.host_time_s for p in packets if p.location == loc]
        s = summary[Location(loc)]
        assert s.packets == len(mine)
        assert s.first_host_time_s == pytest.approx(mine[0], abs=2e-9)
        assert s.last_host_time_s == pytest.approx(mine[-1], abs=2e-9)


def test_standard_mcap_readers_agree(tmp_path: Path) -> None:
    """What Foxglove and the mcap tools see: a complete, indexed, self-describing file."""
    path = tmp_path / "run.mcap"
    packets = _packets(50)
    _record(path, packets)
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == len(packets)
        topics = {c.topic: c for c in summary.channels.values()}
        assert set(topics) == {f"/raw/{loc}" for loc in LOCS}
        assert topics["/raw/pelvis"].message_encoding == "coach.raw.v1"
        assert topics["/raw/pelvis"].metadata == {
            "location": "pelvis",
            "profile": "witmotion-wt901ble",
        }
        got = [
            (c.topic, m.log_time, m.data) for _s, c, m in reader.iter_messages(log_time_order=False)
        ]
        names = {a.name for a in reader.iter_attachments()}
    assert names == {"config.toml", "profiles/witmotion-wt901ble.toml", "profiles/movesense.toml"}
    for (topic, log_time, data), p in zip(got, packets, strict=True):
        assert topic == f"/raw/{p.location}"
        assert log_time == 1_700_000_000_000_000_000 + round(p.host_time_s * 1e9)
        assert data[8:] == p.payload


def test_json_channels(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    block = SampleBlock(
        Location.PELVIS,
        np.array([0.0, 0.005]),
        np.array([[0.1, 0.2, 9.8], [0.3, 0.4, math.nan]]),
        np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
    )
    values = [
        block,
        GaitEvent(1.0, 1.05, EventKind.INITIAL_CONTACT, Side.LEFT),
        Stride(
            1.0,
            1.4,
            Side.LEFT,
            contact_time_ms=250.0,
            pelvic_drop_deg=3.5,
            quality=frozenset({"gap"}),
        ),
        Cue(2.0, "drop", "squeeze, relax, float", Side.LEFT),
        QualityChange(2.5, Location.PELVIS, QualityFlag.GAP, True),
    ]
    with Recorder(path, CONFIG, PROFILES, fsync=False) as rec:
        rec.write_raw("pelvis", 0.0, b"\x55\x61")
        for value in values:
            rec.write_value(value)
        rec.write_json("/custom/thing", 3.0, {"t": 3.0, "x": [1, 2]})
        with pytest.raises(ValueError, match="/raw/"):
            rec.write_json("/raw/pelvis", 3.0, {})
    recording = open_recording(path)
    messages = list(recording.iter_json())
    assert [m.topic for m in messages] == [
        "/samples/pelvis",
        "/samples/pelvis",
        "/events",
        "/strides",
        "/cues",
        "/quality",
        "/custom/thing",
    ]
    assert messages[1].data == {
        "t": 0.005,
        "ax": 0.3,
        "ay": 0.4,
        "az": None,
        "gx": 4.0,
        "gy": 5.0,
        "gz": 6.0,
    }
    assert messages[2].data["kind"] == "initial_contact"
    assert messages[3].data["pelvic_drop_deg"] == 3.5
    assert messages[3].data["flight_time_ms"] is None
    assert messages[3].data["quality"] == ["gap"]
    assert messages[4].t == pytest.approx(2.0, abs=1e-9)
    assert messages[4].data["phrase"] == "squeeze, relax, float"
    assert len(list(recording.iter_raw())) == 1
    assert len(list(recording.iter_json(topics={"/events"}))) == 1
    with open(path, "rb") as f:
        schemas = make_reader(f).get_summary().schemas.values()  # type: ignore[union-attr]
    by_name = {s.name: s for s in schemas}
    assert by_name["coach.Stride"].encoding == "jsonschema"
    assert "pelvic_drop_deg" in json.loads(by_name["coach.Stride"].data)["properties"]


def test_truncated_at_any_byte_replays_a_prefix(tmp_path: Path) -> None:
    full = tmp_path / "full.mcap"
    packets = _packets(300)  # 3 s: a chunk every 0.5 s of (fake) host time
    _record(full, packets)
    data = full.read_bytes()
    rng = random.Random(7)
    cuts = sorted(set(range(0, 400)) | {rng.randrange(len(data)) for _ in range(250)})
    cut_file = tmp_path / "cut.mcap"
    previous = 0
    seen_counts = set()
    for cut in cuts:
        cut_file.write_bytes(data[:cut])
        recording = open_recording(cut_file)
        got = list(recording.iter_raw())
        assert recording.truncated, cut
        assert got == packets[: len(got)], cut
        assert len(got) >= previous, cut  # more bytes never give fewer packets
        previous = len(got)
        seen_counts.add(len(got))
        counts = {loc: s.packets for loc, s in recording.summary().items()}
        for loc in LOCS:
            assert counts.get(Location(loc), 0) == sum(p.location == loc for p in got), cut
        if cut > 600:
            assert recording.config_toml == CONFIG
    assert len(seen_counts) >= 5  # the cuts saw several chunk boundaries
    assert previous == len(packets)  # a file cut in its summary section lost no data


@pytest.mark.parametrize("damaged", [0, 2])
def test_damaged_chunk_is_skipped_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damaged: int
) -> None:
    path = tmp_path / "run.mcap"
    packets = _packets(300)
    _record(path, packets)
    data = bytearray(path.read_bytes())
    chunks = []  # (body offset, length) of every chunk record
    position = 8
    while position + 9 <= len(data):
        opcode, length = struct.unpack_from("<BQ", data, position)
        if opcode == 6:
            chunks.append((position + 9, length))
        position += 9 + length
    assert len(chunks) >= 5
    offset, length = chunks[damaged]
    data[offset + length // 2] ^= 0xFF  # inside the chunk's compressed records
    # (chunk 0 also holds the channel records: the metadata's raw_channels stand in)
    path.write_bytes(bytes(data))
    recording = open_recording(path)
    got = list(recording.iter_raw())
    assert recording.truncated
    assert "damaged" in caplog.text
    assert 0 < len(got) < len(packets)
    assert all(p in packets for p in got)
    assert got[-1] == packets[-1]  # the chunks after the damaged one are still read


def test_flushes_reach_the_file_while_recording(tmp_path: Path) -> None:
    path = tmp_path / "live.mcap"
    clock = FakeClock()
    rec = Recorder(path, CONFIG, PROFILES, 0.5, fsync=True, clock=clock)
    try:
        rec.write_raw("pelvis", 0.1, b"a")
        assert list(open_recording(path).iter_raw()) == []  # still in the open chunk
        clock.now = 0.49
        assert not rec.flush_if_due()
        clock.now = 0.5
        assert rec.flush_if_due()  # a timer flushes even when no packet arrives
        assert [p.payload for p in open_recording(path).iter_raw()] == [b"a"]
        clock.now = 0.7
        rec.write_raw("pelvis", 0.7, b"b")
        clock.now = 1.0
        rec.write_raw("pelvis", 1.0, b"c")  # due: this write flushes
        assert [p.payload for p in open_recording(path).iter_raw()] == [b"a", b"b", b"c"]
        assert open_recording(path).truncated
    finally:
        rec.close()
    assert not open_recording(path).truncated
    assert rec.packets == 3 and rec.dropped == 0
    rec.write_raw("pelvis", 2.0, b"d")  # after close: dropped, counted, no error
    assert rec.dropped == 1


CHILD = textwrap.dedent(
    """
    import sys, time
    from coach.sinks.recorder import ProfileText, Recorder
    locs = ("pelvis", "left_shank", "right_shank")
    profiles = {loc: ProfileText("sim", "x = 1\\n") for loc in locs}
    rec = Recorder(sys.argv[1], "", profiles, flush_interval_s=0.5, fsync=False)
    t0 = time.monotonic()
    i = 0
    while True:
        t = time.monotonic() - t0
        for k, loc in enumerate(locs):
            rec.write_raw(loc, t, i.to_bytes(4, "little") * (1 + k))
        print(i, repr(t), flush=True)
        i += 1
        time.sleep(0.002)
    """
)


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    lines: list[bytes] = []
    buffer = b""
    deadline = time.monotonic() + 20.0
    reported_t = 0.0
    try:
        while reported_t <= 3.2:  # bounded poll on the pipe, no fixed sleep
            assert time.monotonic() < deadline, "the child did not record 3 s in time"
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if not ready:
                assert child.poll() is None, "the child died"
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            assert chunk, "the child closed its output"
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += complete
            if lines:
                reported_t = float(lines[-1].split()[1])
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    lines += [line for line in (buffer + rest).split(b"\n") if line.strip()]
    last_i, last_t = int(lines[-1].split()[0]), float(lines[-1].split()[1])
    assert child.returncode == -signal.SIGKILL

    recording = open_recording(path)
    assert recording.truncated
    got = list(recording.iter_raw())
    assert got, "nothing survived"
    for j, p in enumerate(got):  # an exact prefix of what was written, in order
        i, k = divmod(j, 3)
        assert p.location == ("pelvis", "left_shank", "right_shank")[k]
        assert p.payload == i.to_bytes(4, "little") * (1 + k)
    lost_s = last_t - got[-1].host_time_s
    print(
        f"reported {last_i + 1} groups to t={last_t:.3f} s, replayed to "
        f"t={got[-1].host_time_s:.3f} s: lost {lost_s:.3f} s"
    )
    assert lost_s <= 1.0


def test_not_mcap_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mcap"
    text.write_text("t,ax,ay,az\n0,0,0,9.81\n")
    with pytest.raises(SessionFormatError, match="not an MCAP file"):
        open_recording(text)
    with pytest.raises(SessionFormatError, match="folder"):
        open_recording(tmp_path)
    with pytest.raises(SessionFormatError, match="cannot read"):
        open_recording(tmp_path / "missing.mcap")


def _foreign(path: Path) -> None:
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="someone-else/1.0")
        schema = writer.register_schema("Imu", "jsonschema", b'{"type":"object"}')
        channel = writer.register_channel("/imu", "json", schema)
        for i in range(100):
            writer.add_message(channel, i * 10**7, b'{"ax":1}', i * 10**7)
        writer.finish()


def test_foreign_mcap_is_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "other.mcap"
    _foreign(path)
    with pytest.raises(SessionFormatError, match=r"not a coach recording.*someone-else"):
        open_recording(path)
    cut = tmp_path / "other_cut.mcap"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SessionFormatError, match="not a coach recording"):
        open_recording(cut)


def test_newer_format_says_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "future.mcap"
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile="coach", library="coach/9.0")
        writer.add_metadata("coach.session", {"format": "coach.recording/2"})
        writer.finish()
    with pytest.raises(SessionFormatError, match="upgrade coach"):
        open_recording(path)


def test_recorder_refuses_bad_paths_and_locations(tmp_path: Path) -> None:
    path = tmp_path / "run.mcap"
    path.write_bytes(b"old run")
    with pytest.raises(RecordingError, match="already exists"):
        Recorder(path, CONFIG, PROFILES)
    assert path.read_bytes() == b"old run"
    with pytest.raises(RecordingError, match=r"recording\.directory"):
        Recorder(tmp_path / "nope" / "run.mcap", CONFIG, PROFILES)
    with pytest.raises(ValueError, match="unknown sensor locations"):
        Recorder(tmp_path / "a.mcap", CONFIG, {"elbow": PROFILES["pelvis"]})
    with pytest.raises(ValueError, match="flush_interval_s"):
        Recorder(tmp_path / "b.mcap", CONFIG, PROFILES, flush_interval_s=2.0)
    rec = Recorder(tmp_path / "c.mcap", CONFIG, {"pelvis": PROFILES["pelvis"]}, fsync=False)
    with rec, pytest.raises(ValueError, match="no raw channel"):
        rec.write_raw("left_shank", 0.0, b"")
