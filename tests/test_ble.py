"""The BLE layer through the real bleak API against emulated sensors (design.md section 9, layer 4).

Every test drives ``bleak.BleakScanner`` / ``bleak.BleakClient`` with the bumble backend of
``coach.sources.bumble_backend`` over an in-process bumble link; the peripherals are
``coach.sources.emulated_sensor.EmulatedSensor`` streaming simulator data. Emulated time runs
faster than real time (``TIME_SCALE``) and the BLE side stamps packets with the same clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bumble.link import LocalLink

from coach.config import CoachConfig
from coach.errors import DeviceError
from coach.evaluation import match_events
from coach.profiles import FirmwareProfile, available_profiles, load_profile
from coach.runtime import replay_blocks
from coach.sources.ble import (
    BleBackend,
    DropOldestQueue,
    LinkState,
    ReconnectPolicy,
    SensorStatus,
    SensorStream,
    SensorTarget,
    scan,
)
from coach.sources.bumble_backend import BumbleRadio
from coach.sources.emulated_sensor import EmulatedClock, EmulatedSensor
from coach.sources.recording import RawPacket
from coach.sources.simulate import SimulationParams, simulate
from coach.stream.core import SensorSpec
from coach.types import EventKind, Location, SampleBlock
from coach.wire import make_decoder

TIME_SCALE = 4.0
FAST = ReconnectPolicy(min_delay_s=0.05, max_delay_s=0.5, scan_s=2.0, connect_timeout_s=5.0)
PROFILES = sorted(available_profiles())


def run_async(coro: Coroutine[Any, Any, Any], timeout_s: float = 50.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def sim_blocks(
    profile: FirmwareProfile, duration_s: float, **kw: Any
) -> dict[Location, SampleBlock]:
    params = SimulationParams(duration_s=duration_s, rate_hz=profile.rates.default_hz, **kw)
    return simulate(params).blocks


class Rig:
    """A link, a bleak backend over it, a shared emulated clock and some emulated sensors."""

    def __init__(self, time_scale: float = TIME_SCALE) -> None:
        self.link = LocalLink()
        self.radio = BumbleRadio(self.link)
        self.backend = BleBackend(self.radio.client_backend, self.radio.scanner_backend)
        self.clock = EmulatedClock(time_scale)
        self.sensors: list[EmulatedSensor] = []

    def sensor(
        self, profile: FirmwareProfile, location: Location, block: SampleBlock, **kw: Any
    ) -> EmulatedSensor:
        i = len(self.sensors) + 1
        s = EmulatedSensor(
            profile,
            location,
            block,
            self.link,
            address=f"C{i}:11:22:33:44:{i:02X}",
            clock=self.clock,
            **kw,
        )
        self.sensors.append(s)
        return s

    def stream(self, targets: list[SensorTarget], **kw: Any) -> SensorStream:
        return SensorStream(targets, backend=self.backend, clock=self.clock.now, policy=FAST, **kw)

    async def close(self) -> None:
        for s in self.sensors:
            await s.stop()
        await self.radio.close()


@contextlib.asynccontextmanager
async def rig(time_scale: float = TIME_SCALE) -> AsyncIterator[Rig]:
    r = Rig(time_scale)
    try:
        yield r
    finally:
        await r.close()


def drain(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def decode(
    profile: FirmwareProfile, packets: list[RawPacket], location: Location
) -> tuple[Any, ...]:
    decoder = make_decoder(profile)
    parts = [decoder.feed(p.payload, p.host_time_s) for p in packets if p.location is location]
    parts = [p for p in parts if len(p)]
    t = np.concatenate([p.t for p in parts])
    acc = np.concatenate([p.acc for p in parts])
    gyr = np.concatenate([p.gyr for p in parts])
    index = np.concatenate([p.index for p in parts])
    return decoder, t, acc, gyr, index


def quantum(profile: FirmwareProfile) -> tuple[float, float]:
    """Largest rounding error of acc and gyr in SI (half an LSB; float formats: tiny)."""
    lay = profile.packet
    assert lay.gyr is not None
    out = []
    for f in (lay.acc, lay.gyr):
        out.append(0.5 * f.si_scale + 1e-9 if "i" in f.dtype else 1e-4)
    return out[0], out[1]


async def wait_status(
    queue: asyncio.Queue[SensorStatus],
    state: LinkState,
    location: Location,
    seen: list[SensorStatus],
) -> SensorStatus:
    while True:
        status = await queue.get()
        seen.append(status)
        if status.state is state and status.location is location:
            return status


# -- unit pieces -------------------------------------------------------------------------------


def test_drop_oldest_queue_counts_and_keeps_newest() -> None:
    async def main() -> list[int]:
        q: DropOldestQueue[int] = DropOldestQueue(3)
        for i in range(10):
            q.put_nowait(i)
        assert q.dropped == 7
        return drain(q)

    assert run_async(main()) == [7, 8, 9]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    policy = ReconnectPolicy(min_delay_s=0.2, max_delay_s=1.0)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert cap / 2 <= min(delays) and max(delays) <= cap
        assert max(delays) - min(delays) > 0.3 * cap / 2  # jittered


def test_targets_without_address_or_name_must_be_unambiguous() -> None:
    profile = load_profile("coach-sim")
    targets = [
        SensorTarget(Location.LEFT_SHANK, profile),
        SensorTarget(Location.RIGHT_SHANK, profile),
    ]
    with pytest.raises(DeviceError, match="without address or name"):
        SensorStream(targets)


# -- scanning ----------------------------------------------------------------------------------


def test_scan_finds_each_profile() -> None:
    async def main() -> None:
        async with rig() as r:
            for name, location in zip(PROFILES, list(Location), strict=False):
                profile = load_profile(name)
                block = sim_blocks(profile, 2.0, sensors=(Location.PELVIS,))[Location.PELVIS]
                await r.sensor(profile, location, block).start()
            found = await scan(0.3, backend=r.backend)
            by_address = {d.address: d for d in found}
            assert len(found) == len(PROFILES)
            for s in r.sensors:
                device = by_address[s.address]
                assert device.profile_name == s.profile.name
                assert device.name == s.name
            only = await scan(0.3, [load_profile("movesense-imu6")], backend=r.backend)
            assert [d.profile_name for d in only] == ["movesense-imu6"]

    run_async(main())


# -- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("profile_name", PROFILES)
def test_stream_decodes_to_the_simulated_samples(profile_name: str) -> None:
    profile = load_profile(profile_name)

    async def main() -> None:
        async with rig() as r:
            block = sim_blocks(profile, 4.0, sensors=(Location.LEFT_SHANK,))[Location.LEFT_SHANK]
            sensor = r.sensor(profile, Location.LEFT_SHANK, block)
            await sensor.start()
            stream = r.stream([SensorTarget(Location.LEFT_SHANK, profile, name=sensor.name)])
            assert await stream.start(5.0) == [Location.LEFT_SHANK]
            await r.clock.sleep_until(3.5)
            await stream.stop()
            assert sensor.log.connections == 1 and not sensor.streaming
            # configure (rate) and stop writes were obeyed
            for step in profile.steps("configure") + profile.steps("stop"):
                if step.op.startswith("write"):
                    assert step.data in sensor.log.writes
            if profile.commands.rate_code and profile.commands.configure:
                assert sensor.log.configured_rate_hz == profile.rates.default_hz
            packets = drain(stream.packets)
            assert stream.dropped == 0
            decoder, t, acc, gyr, index = decode(profile, packets, Location.LEFT_SHANK)
            sent = sensor.log.positions()
            # the last packet(s) may have been in flight when notifications were stopped
            assert len(sent) - 8 <= len(t) <= len(sent)
            pos = sent[: len(t)]
            assert decoder.stats.malformed == 0 and decoder.stats.lost_samples == 0
            assert np.array_equal(index, index[0] + np.arange(len(t)))
            q_acc, q_gyr = quantum(profile)
            assert np.abs(acc - block.acc[pos]).max() <= q_acc
            assert block.gyr is not None
            assert np.abs(gyr - block.gyr[pos]).max() <= q_gyr
            # host-stamped times (decoder's clock estimate): about one connection interval late
            late = t - block.t[pos]
            assert late.min() > -0.01
            assert np.median(late) < 0.05 and late.max() < 0.25

    run_async(main())


@pytest.mark.parametrize("profile_name", ["coach-sim", "movella-dot", "thingy52"])
def test_malformed_notifications_are_counted_and_skipped(profile_name: str) -> None:
    profile = load_profile(profile_name)

    async def main() -> None:
        async with rig() as r:
            block = sim_blocks(profile, 3.0, sensors=(Location.PELVIS,))[Location.PELVIS]
            sensor = r.sensor(profile, Location.PELVIS, block, malformed_every=7)
            await sensor.start()
            stream = r.stream([SensorTarget(Location.PELVIS, profile, address=sensor.address)])
            await stream.start(5.0)
            await r.clock.sleep_until(2.5)
            await stream.stop()
            decoder, t, acc, _gyr, _index = decode(profile, drain(stream.packets), Location.PELVIS)
            assert sensor.log.malformed >= 3
            assert decoder.stats.malformed == sensor.log.malformed
            pos = sensor.log.positions()[: len(t)]
            assert len(pos) == len(t) >= len(sensor.log.positions()) - 8
            assert np.abs(acc - block.acc[pos]).max() <= quantum(profile)[0]

    run_async(main())


def test_disconnect_reconnects_and_the_others_go_on() -> None:
    profile = load_profile("coach-sim")
    scale = 2.0

    async def main() -> None:
        async with rig(scale) as r:
            blocks = sim_blocks(profile, 6.0, sensors=(Location.LEFT_SHANK, Location.RIGHT_SHANK))
            lost = r.sensor(
                profile,
                Location.LEFT_SHANK,
                blocks[Location.LEFT_SHANK],
                disconnect_at_s=2.0,
                reconnect_after_s=1.5,
            )
            r.sensor(profile, Location.RIGHT_SHANK, blocks[Location.RIGHT_SHANK])
            for s in r.sensors:
                await s.start()
            stream = r.stream([SensorTarget(s.location, profile, name=s.name) for s in r.sensors])
            await stream.start(5.0)
            seen: list[SensorStatus] = []
            await wait_status(stream.status, LinkState.CONNECTED, Location.RIGHT_SHANK, seen)
            down = await wait_status(
                stream.status, LinkState.DISCONNECTED, Location.LEFT_SHANK, seen
            )
            up = await wait_status(stream.status, LinkState.CONNECTED, Location.LEFT_SHANK, seen)
            await r.clock.sleep_until(5.0)
            await stream.stop()

            states = [s.state for s in seen if s.location is Location.LEFT_SHANK]
            assert LinkState.RECONNECTING in states[states.index(LinkState.DISCONNECTED) :]
            assert abs(down.t - lost.log.disconnected_at[0]) < 0.1 * scale
            readvertised = lost.log.advertising_since[-1]
            assert readvertised >= 3.5 - 0.05
            # connected again within 2 s (real time) of advertising again
            assert 0.0 < (up.t - readvertised) / scale < 2.0
            assert lost.log.connections == 2

            packets = drain(stream.packets)
            left = [p for p in packets if p.location is Location.LEFT_SHANK]
            right = [p for p in packets if p.location is Location.RIGHT_SHANK]
            # no packet the sensor sent was lost; the gap shows in the arrival times
            assert len(left) == len(lost.log.sent)
            arrivals = np.array([p.host_time_s for p in left])
            gap = np.diff(arrivals).max()
            assert 1.5 <= gap <= up.t - down.t + 0.5
            # the steady sensor streamed on through the gap
            right_t = np.array([p.host_time_s for p in right])
            during = (right_t > down.t) & (right_t < up.t)
            assert during.sum() >= 0.8 * (up.t - down.t) * 200 / 4
            # decoded: the gap is a gap in sample indices, not lost data
            decoder, t, acc, _g, index = decode(profile, packets, Location.LEFT_SHANK)
            pos = lost.log.positions()
            assert len(t) == len(pos)
            assert np.abs(acc - blocks[Location.LEFT_SHANK].acc[pos]).max() <= quantum(profile)[0]
            assert decoder.stats.lost_samples == (index[-1] - index[0] + 1) - len(index)
            assert decoder.stats.lost_samples > 1.0 * 200
            assert stream.links[Location.LEFT_SHANK].stats.reconnect_s

    run_async(main())


def test_missing_required_sensor_is_a_clear_error() -> None:
    profile = load_profile("coach-sim")

    async def main() -> None:
        async with rig() as r:
            block = sim_blocks(profile, 2.0, sensors=(Location.PELVIS,))[Location.PELVIS]
            present = r.sensor(profile, Location.PELVIS, block)
            await present.start()
            stream = r.stream(
                [
                    SensorTarget(Location.PELVIS, profile, name=present.name),
                    SensorTarget(Location.RIGHT_SHANK, profile, name="coach-sim right_shank"),
                ]
            )
            with pytest.raises(DeviceError) as info:
                await stream.start(timeout_s=0.5)
            message = str(info.value)
            assert "right_shank" in message and "coach-sim right_shank" in message
            assert "not found within 0.5 s" in message and "pelvis" not in message
            assert not stream.links[Location.PELVIS].connected

    run_async(main())


def test_missing_optional_sensor_starts_without_it_and_joins_later() -> None:
    profile = load_profile("coach-sim")

    async def main() -> None:
        async with rig() as r:
            blocks = sim_blocks(profile, 4.0, sensors=(Location.PELVIS, Location.LEFT_SHANK))
            present = r.sensor(profile, Location.PELVIS, blocks[Location.PELVIS])
            late = r.sensor(profile, Location.LEFT_SHANK, blocks[Location.LEFT_SHANK])
            await present.start()
            stream = r.stream(
                [
                    SensorTarget(Location.PELVIS, profile, name=present.name),
                    SensorTarget(Location.LEFT_SHANK, profile, name=late.name, required=False),
                ]
            )
            assert await stream.start(timeout_s=0.5) == [Location.PELVIS]
            seen: list[SensorStatus] = []
            missing = await wait_status(stream.status, LinkState.MISSING, Location.LEFT_SHANK, seen)
            assert "not found" in missing.detail
            await late.start()
            joined = await wait_status(
                stream.status, LinkState.CONNECTED, Location.LEFT_SHANK, seen
            )
            assert joined.t > missing.t
            await r.clock.sleep_until(joined.t + 0.5)
            await stream.stop()
            locations = {p.location for p in drain(stream.packets)}
            assert locations == {Location.PELVIS, Location.LEFT_SHANK}

    run_async(main())


def test_stall_and_slow_connection_interval_delay_but_lose_nothing() -> None:
    profile = load_profile("coach-sim")

    async def main() -> None:
        async with rig() as r:
            block = sim_blocks(profile, 4.0, sensors=(Location.PELVIS,))[Location.PELVIS]
            sensor = r.sensor(
                profile, Location.PELVIS, block, stall=(2.0, 0.5), connection_interval_ms=50.0
            )
            await sensor.start()
            stream = r.stream([SensorTarget(Location.PELVIS, profile, name=sensor.name)])
            await stream.start(5.0)
            await r.clock.sleep_until(3.5)
            await stream.stop()
            packets = drain(stream.packets)
            arrivals = np.array([p.host_time_s for p in packets])
            assert np.diff(arrivals).max() >= 0.45  # the stall
            _d, t, _acc, _g, index = decode(profile, packets, Location.PELVIS)
            assert np.array_equal(index, index[0] + np.arange(len(index)))  # nothing lost
            pos = sensor.log.positions()[: len(t)]
            assert np.median(t - block.t[pos]) < 0.05 + 0.02  # ≤ one 50 ms interval (+ stamp)

    run_async(main())


# -- end to end --------------------------------------------------------------------------------


def test_three_emulated_sensors_to_the_core_find_the_true_contacts() -> None:
    profile = load_profile("coach-sim")
    duration = 24.0
    run = simulate(SimulationParams(duration_s=duration, seed=3, noise="realistic"))

    async def main(scale: float) -> tuple[list[RawPacket], float]:
        async with rig(scale) as r:
            for location, block in run.blocks.items():
                await r.sensor(profile, location, block).start()
            stream = r.stream([SensorTarget(s.location, profile, name=s.name) for s in r.sensors])
            await stream.start(5.0)
            await r.clock.sleep_until(duration - 0.5)
            await stream.stop()
            assert stream.dropped == 0
            late = np.concatenate([s.log.late_s for s in r.sensors])
            return drain(stream.packets), float(np.percentile(late, 99))

    # Faster than real time needs a free CPU; on a busy machine the emulator falls behind its
    # clock (packets late by tens of ms), so fall back to a slower pace rather than a wrong test.
    for scale in (4.0, 1.5):
        packets, late_p99 = run_async(main(scale))
        if late_p99 < 0.02:
            break
    else:
        pytest.skip(f"host too busy to emulate in time (p99 lateness {late_p99 * 1000:.0f} ms)")
    decoders = {loc: make_decoder(profile) for loc in run.blocks}
    blocks = []
    for p in packets:  # arrival order, one block per notification, as a live run feeds the core
        out = decoders[p.location].feed(p.payload, p.host_time_s)
        if len(out):
            blocks.append(out.to_block(p.location))
    specs = [SensorSpec(loc, profile.rates.default_hz, True) for loc in sorted(run.blocks)]
    result = replay_blocks(CoachConfig(), specs, blocks)
    start = min(b.t[0] for b in blocks)
    span = (start + 8.0, duration - 1.5)
    score = match_events(result.events, run.events, EventKind.INITIAL_CONTACT, 0.06, span)
    assert score.n_truth >= 30
    assert score.found_fraction >= 0.95
    assert score.spurious_fraction <= 0.05
    assert abs(score.bias_ms()) < 40.0


# -- optional: unmodified bleak + BlueZ in a virtme-ng VM --------------------------------------

VM_SCRIPT = Path(__file__).resolve()  # run as a script inside the VM: see _vm_inner


def _kernel() -> str | None:
    images = sorted(Path("/boot").glob("vmlinuz-*"))
    return str(images[-1]) if images else None


@pytest.mark.vm
def test_bluez_in_a_vm_streams_from_an_emulated_sensor(request: pytest.FixtureRequest) -> None:
    """Boot a kernel with virtme-ng, create /dev/vhci, run bluetoothd, and let unmodified bleak
    (BlueZ backend) scan, connect and stream from an EmulatedSensor attached through vhci."""
    if "vm" not in (request.config.getoption("-m") or ""):
        pytest.skip("opt-in: run with pytest -m vm (boots a VM, about a minute)")
    vng = shutil.which("vng")
    qemu = shutil.which("qemu-system-x86_64")
    kernel = _kernel()
    if vng is None or qemu is None or kernel is None:
        pytest.skip("needs vng (PyPI virtme-ng), qemu-system-x86 and a kernel image in /boot")
    if (
        shutil.which("bluetoothd") is None
        and not Path("/usr/libexec/bluetooth/bluetoothd").exists()
    ):
        pytest.skip("needs bluez (bluetoothd) and dbus")
    inner = (
        "modprobe hci_vhci && mkdir -p /run/dbus && dbus-daemon --system --fork && "
        "(/usr/libexec/bluetooth/bluetoothd -n || bluetoothd -n) >/tmp/bluetoothd.log 2>&1 & "
        f"sleep 1; cd {Path.cwd()} && {sys.executable} {VM_SCRIPT}"
    )
    cmd = [
        vng,
        "-r",
        kernel,
        "--disable-kvm",
        "--rwdir",
        str(Path.cwd()),
        "--user",
        "root",
        "--exec",
        f"sh -c '{inner}'",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "VM-CHECK OK" in proc.stdout


async def _vm_inner() -> None:
    """Inside the VM: a bumble controller on /dev/vhci is BlueZ's adapter; an emulated coach-sim
    sensor shares its link; unmodified bleak (default backend) scans, connects and streams."""
    from bumble.controller import Controller
    from bumble.transport import open_transport

    profile = load_profile("coach-sim")
    block = sim_blocks(profile, 6.0, sensors=(Location.PELVIS,))[Location.PELVIS]
    async with await open_transport("vhci") as hci:
        link = LocalLink()
        Controller("bluez", host_source=hci.source, host_sink=hci.sink, link=link)
        await asyncio.sleep(2.0)  # bluetoothd picks up and powers the new adapter
        subprocess.run(["bluetoothctl", "power", "on"], check=False, timeout=10)
        clock = EmulatedClock()
        sensor = EmulatedSensor(
            profile, Location.PELVIS, block, link, address="C1:11:22:33:44:01", clock=clock
        )
        await sensor.start()
        found = await scan(3.0)
        assert any(d.name == sensor.name and d.profile_name == "coach-sim" for d in found), found
        stream = SensorStream(
            [SensorTarget(Location.PELVIS, profile, name=sensor.name)], clock=clock.now
        )
        await stream.start(10.0)
        await clock.sleep_until(clock.now() + 2.0)
        await stream.stop()
        decoder, t, _acc, _gyr, _index = decode(profile, drain(stream.packets), Location.PELVIS)
        assert len(t) >= 300 and decoder.stats.malformed == 0, decoder.stats
        await sensor.stop()
    print("VM-CHECK OK", len(t), "samples")


if __name__ == "__main__":
    asyncio.run(_vm_inner())
