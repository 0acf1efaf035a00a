"""MQTT telemetry and remote tuning, against a real mosquitto (tests/mosquitto_fixture.py).

Every test uses its own athlete name, hence its own topics. Nothing waits with sleeps: tests
await messages (or the publisher's ``connected`` event) with timeouts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from mosquitto_fixture import PREFIX, USERS, Mosquitto, prepare_mosquitto, start_mosquitto

from coach.cli import main as cli_main
from coach.config import CoachConfig, MqttConfig, load_config, parse_config
from coach.errors import ConfigError
from coach.remote_tuning import (
    MAX_UPDATE_BYTES,
    RemoteTuner,
    apply_update,
    parse_update,
    tunable_view,
)
from coach.sinks import mqtt_schema as schema
from coach.sinks.mqtt import (
    Credentials,
    MqttPublisher,
    backoff_delay,
    resolve_credentials,
    tls_context,
)
from coach.types import (
    Cue,
    EventKind,
    GaitEvent,
    Location,
    QualityChange,
    QualityFlag,
    Side,
    Stride,
)

TIMEOUT_S = 5.0
USER_ENV = "COACH_TEST_MQTT_USER"
PASS_ENV = "COACH_TEST_MQTT_PASS"
RUNNER_ENV = {USER_ENV: "runner", PASS_ENV: USERS["runner"]}

EVENT_KEYS = {"schema", "type", "athlete", "seq", "wall_time", "t", "t_detected", "kind", "side"}
STRIDE_KEYS = {
    "schema",
    "type",
    "athlete",
    "seq",
    "wall_time",
    "t",
    "t_detected",
    "side",
    "contact_time_ms",
    "flight_time_ms",
    "cadence_spm",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "vertical_oscillation_cm",
    "impact_peak_g",
    "braking_mps",
    "quality",
}
CUE_KEYS = {
    "schema",
    "type",
    "athlete",
    "seq",
    "wall_time",
    "t",
    "rule",
    "phrase",
    "side",
    "play_at",
}


# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One broker shared by the tests that do not stop it."""
    server = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Any:
    """A broker of this test alone (it may be stopped and started)."""
    server = start_mosquitto(tmp_path / "mosquitto")
    yield server
    server.stop()


@pytest.fixture
def athlete(request: pytest.FixtureRequest) -> str:
    """A unique athlete name, hence unique topics, per test."""
    stem = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"{stem}_{uuid.uuid4().hex[:8]}"


def mqtt_config(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": broker.port,
        "topic_prefix": PREFIX,
        "username_env": USER_ENV,
        "password_env": PASS_ENV,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "connect_timeout_s": 2.0,
        "status_interval_s": 60.0,
    }
    values.update(overrides)
    return MqttConfig.model_validate(values)


@asynccontextmanager
async def subscriber(
    broker: Mosquitto, topic: str, user: str = "coach"
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=user, password=USERS[user], timeout=TIMEOUT_S
    ) as client:
        await client.subscribe(topic, qos=1)
        yield client


async def wait_for(
    client: aiomqtt.Client,
    predicate: Callable[[str, dict[str, Any]], bool],
    seen: list[tuple[str, dict[str, Any]]] | None = None,
) -> tuple[str, dict[str, Any], aiomqtt.Message]:
    """Read messages until one satisfies ``predicate`` (all read ones go to ``seen``)."""
    async with asyncio.timeout(TIMEOUT_S):
        async for message in client.messages:
            topic = message.topic.value
            if topic.endswith("/config/set"):
                continue  # the coach's own updates
            assert isinstance(message.payload, bytes)
            payload = json.loads(message.payload)
            if seen is not None:
                seen.append((topic, payload))
            if predicate(topic, payload):
                return topic, payload, message
    raise AssertionError("message stream ended")


def is_status(online: bool) -> Callable[[str, dict[str, Any]], bool]:
    return lambda topic, p: topic.endswith("/status") and p["online"] is online


def event(i: int) -> GaitEvent:
    kind = EventKind.INITIAL_CONTACT if i % 2 == 0 else EventKind.TOE_OFF
    side = Side.LEFT if (i // 2) % 2 == 0 else Side.RIGHT
    return GaitEvent(t=0.18 * i, t_detected=0.18 * i + 0.03, kind=kind, side=side)


def stride(i: int) -> Stride:
    return Stride(
        t=0.36 * i,
        t_detected=0.36 * i + 0.4,
        side=Side.LEFT if i % 2 == 0 else Side.RIGHT,
        contact_time_ms=250.0 + i,
        flight_time_ms=100.0,
        cadence_spm=170.0,
        pelvic_drop_deg=5.0 + 0.1 * i,
        pelvic_rotation_deg=None,
        quality=frozenset({"gap"}) if i == 3 else frozenset(),
    )


def tuner_config() -> CoachConfig:
    return load_config()


# ---- schema, queue, backoff, secrets (no broker) --------------------------------------------


def test_payloads_follow_the_documented_schema() -> None:
    message = schema.envelope("stride", "ann", 7, 1_700_000_000.25)
    message.update(schema.fields_of(stride(3)))
    decoded = json.loads(schema.encode(message))
    assert set(decoded) == STRIDE_KEYS
    assert decoded["schema"] == schema.SCHEMA == "coach.v1"
    assert decoded["type"] == "stride" and decoded["seq"] == 7 and decoded["athlete"] == "ann"
    assert decoded["pelvic_rotation_deg"] is None  # unmeasured stays null
    assert decoded["quality"] == ["gap"] and decoded["side"] == "right"
    assert set(schema.event_fields(event(1))) | set(message) >= EVENT_KEYS - {"schema"}
    assert schema.event_fields(event(1))["kind"] == "toe_off"
    cue = Cue(t=12.0, rule="pelvic_drop", phrase="squeeze, relax, float", side=Side.LEFT)
    assert schema.cue_fields(cue)["play_at"] is None
    change = QualityChange(1.5, Location.PELVIS, QualityFlag.GAP, True)
    assert schema.quality_fields(change) == {
        "t": 1.5,
        "location": "pelvis",
        "flag": "gap",
        "active": True,
    }
    # Non-finite numbers become null rather than invalid JSON.
    assert json.loads(schema.encode({"x": math.nan, "y": [math.inf]})) == {"x": None, "y": [None]}
    with pytest.raises(ValueError, match="athlete"):
        schema.Topics.of("coach", "a/b")


def test_queue_is_bounded_drops_the_oldest_and_counts() -> None:
    publisher = MqttPublisher(MqttConfig(queue_size=3), "ann")
    for i in range(5):
        publisher.publish_event(event(i))
    assert publisher.stats.dropped == 2
    assert publisher.queued == 3
    assert [item.seq for item in publisher._queue] == [2, 3, 4]
    with pytest.raises(ValueError, match="unknown telemetry kind"):
        publisher.publish_nowait("status", {})


def test_backoff_grows_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 8.0, rng) for a in range(10)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered
    assert max(delays) <= 8.0


def test_secrets_come_from_env_or_file_and_never_show(tmp_path: Path) -> None:
    config = MqttConfig(username_env="U_VAR", password_env="P_VAR")
    credentials = resolve_credentials(config, {"U_VAR": "ann", "P_VAR": "hunter2-secret"})
    assert credentials == Credentials("ann", "hunter2-secret")
    assert "hunter2-secret" not in repr(credentials)
    with pytest.raises(ConfigError, match="P_VAR is not set"):
        resolve_credentials(config, {"U_VAR": "ann"})
    secret_file = tmp_path / "pw"
    secret_file.write_text("file-secret\n")
    secret_file.chmod(0o600)
    from_file = MqttConfig(username_env="U_VAR", password_file=secret_file)
    assert resolve_credentials(from_file, {"U_VAR": "ann"}).password == "file-secret"
    missing = MqttConfig(username_env="U_VAR", password_file=tmp_path / "absent")
    with pytest.raises(ConfigError, match="password_file"):
        resolve_credentials(missing, {"U_VAR": "ann"})


def test_mqtt_section_is_validated() -> None:
    bad = [
        ({"password_env": "P", "password_file": "/x"}, "not both"),
        ({"password_env": "P"}, "needs username_env"),
        ({"ca_file": "/ca.pem"}, "only apply with tls"),
        ({"tls": True, "client_key": "/k"}, "client_key needs client_cert"),
        ({"topic_prefix": "a//b"}, "mqtt.topic_prefix"),
        ({"password_env": "1BAD"}, "mqtt.password_env"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_min_s"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config({"mqtt": section})


def test_config_check_never_echoes_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COACH_MQTT_PASSWORD", "do-not-print-me")
    monkeypatch.setenv("COACH_MQTT_USERNAME", "ann")
    file = tmp_path / "coach.toml"
    file.write_text(
        '[mqtt]\nenabled = true\nusername_env = "COACH_MQTT_USERNAME"\n'
        'password_env = "COACH_MQTT_PASSWORD"\n'
    )
    assert cli_main(["config", "check", str(file)]) == 0
    out = capsys.readouterr().out
    assert "COACH_MQTT_PASSWORD" in out
    assert "do-not-print-me" not in out


def test_missing_secret_stops_the_start_with_a_clear_error() -> None:
    config = MqttConfig(enabled=True, port=1, username_env="NOPE_USER")

    async def scenario() -> None:
        with pytest.raises(ConfigError, match="NOPE_USER is not set"):
            async with MqttPublisher(config, "ann", environ={}):
                pass

    asyncio.run(scenario())


# ---- remote tuning (no broker) --------------------------------------------------------------


def test_remote_update_merges_rules_by_name() -> None:
    current = load_config()
    update = {"cues": {"rules": [{"name": "pelvic_drop", "high": 6.5}], "min_gap_s": 5.0}}
    new = apply_update(current, update)
    rules = {rule.name: rule for rule in new.cues.rules}
    old_rules = {rule.name: rule for rule in current.cues.rules}
    assert rules["pelvic_drop"].high == 6.5
    assert rules["pelvic_drop"].phrases == old_rules["pelvic_drop"].phrases
    assert rules["cadence_low"] == old_rules["cadence_low"]
    assert [r.name for r in new.cues.rules] == [r.name for r in current.cues.rules]
    assert new.cues.min_gap_s == 5.0
    assert new.model_dump(exclude={"cues"}) == current.model_dump(exclude={"cues"})
    # null resets a key to its default.
    reset = apply_update(new, {"cues": {"rules": [{"name": "pelvic_drop", "repeat_s": None}]}})
    assert next(r for r in reset.cues.rules if r.name == "pelvic_drop").repeat_s is None
    assert set(tunable_view(new)) == {"cues"}


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"mqtt": {"host": "evil.example"}}, "mqtt: cannot be changed remotely"),
        ({"sensors": []}, "sensors: cannot be changed remotely"),
        ({"recording": {"directory": "/tmp"}}, "recording: cannot be changed remotely"),
        ({"nonsense": 1}, "nonsense: unknown section"),
        ({"cues": {"rules": [{"name": "nope", "high": 1}]}}, r"cues.rules\[nope\]: no such rule"),
        (
            {"cues": {"rules": [{"name": "pelvic_drop", "phrases": ["go"]}]}},
            "phrases: cannot be changed remotely",
        ),
        (
            {"cues": {"rules": [{"name": "pelvic_drop", "persistence_n": 10}]}},
            r"cues.rules\[pelvic_drop\]: .*persistence_n",
        ),
        ({"cues": {"min_gap_s": -1}}, "cues.min_gap_s"),
        ({"cues": {"rules": {"name": "x"}}}, "must be a list"),
        ({"cues": 3}, "cues: must be a table"),
    ],
)
def test_remote_update_rejections_keep_the_config(update: dict[str, Any], reason: str) -> None:
    tuner = RemoteTuner(load_config())
    before = tuner.current
    with pytest.raises(ConfigError, match=reason):
        tuner.apply(json.dumps(update).encode())
    assert tuner.current is before and tuner.revision == 0


def test_remote_update_payload_checks() -> None:
    for payload, reason in [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b" " * (MAX_UPDATE_BYTES + 1), "at most"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            parse_update(payload)
    tuner = RemoteTuner(load_config(), allow_new_phrases=True)
    rule = {"name": "new_rule", "metric": "cadence_spm", "low": 150.0, "phrases": ["faster"]}
    config = tuner.apply(json.dumps({"cues": {"rules": [rule]}}))
    assert config.cues.rules[-1].name == "new_rule" and tuner.revision == 1


# ---- against the broker ---------------------------------------------------------------------


def test_telemetry_arrives_in_order_with_schema_and_retained_status(
    broker: Mosquitto, athlete: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = mqtt_config(broker)
    expected: list[tuple[str, int]] = []

    async def scenario() -> None:
        async with subscriber(broker, f"{PREFIX}/{athlete}/#") as sub:
            async with MqttPublisher(config, athlete, environ=RUNNER_ENV) as publisher:
                publisher.publish_status({"sensors": {"pelvis": "connected"}})
                _, status, _ = await wait_for(
                    sub, lambda t, p: t.endswith("/status") and "sensors" in p
                )
                assert status["online"] is True
                assert status["sensors"] == {"pelvis": "connected"}
                for i in range(24):
                    publisher.publish_event(event(i))
                    expected.append(("events", i))
                    if i % 2 == 1:
                        publisher.publish_stride(stride(i // 2))
                        expected.append(("strides", i // 2))
                    if i % 8 == 7:
                        publisher.publish_cue(Cue(0.2 * i, "pelvic_drop", "squeeze"))
                        expected.append(("cues", i // 8))
                seen: list[tuple[str, dict[str, Any]]] = []
                await wait_for(sub, lambda t, p: t.endswith("/events") and p["seq"] == 23, seen)
                await wait_for(sub, lambda t, p: t.endswith("/cues") and p["seq"] == 2, seen)
                telemetry = [(t, p) for t, p in seen if not t.endswith("/status")]
                got = [(t.rsplit("/", 1)[1], p["seq"]) for t, p in telemetry]
                assert got == expected  # in production order, nothing lost
                for topic, payload in telemetry:
                    keys = {"events": EVENT_KEYS, "strides": STRIDE_KEYS, "cues": CUE_KEYS}
                    assert set(payload) == keys[topic.rsplit("/", 1)[1]]
                    assert payload["schema"] == "coach.v1" and payload["athlete"] == athlete
                assert publisher.stats.sent == len(expected)
                assert publisher.stats.dropped == 0
            # Leaving the context: a retained offline status with the final counts.
            _, final, _ = await wait_for(sub, is_status(False))
            assert final["reason"] == "stopped"
            assert final["counts"] == {"events": 24, "strides": 12, "cues": 3, "quality": 0}
            assert final["mqtt"]["sent"] == len(expected)
        async with subscriber(broker, f"{PREFIX}/{athlete}/status", user="viewer") as late:
            _, retained, message = await wait_for(late, lambda t, p: True)
            assert message.retain and retained["online"] is False

    asyncio.run(scenario())
    assert USERS["runner"] not in caplog.text  # the password is never logged


WILL_SCRIPT = """
import asyncio, sys
from coach.config import MqttConfig
from coach.sinks.mqtt import MqttPublisher

async def main():
    config = MqttConfig.model_validate_json(sys.argv[1])
    async with MqttPublisher(config, sys.argv[2]) as publisher:
        await publisher.connected.wait()
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_last_will_marks_the_runner_offline(broker: Mosquitto, athlete: str) -> None:
    config = mqtt_config(broker)

    async def scenario() -> None:
        async with subscriber(broker, f"{PREFIX}/{athlete}/status") as sub:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WILL_SCRIPT,
                config.model_dump_json(),
                athlete,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, **RUNNER_ENV},
            )
            try:
                assert process.stdout is not None
                async with asyncio.timeout(20):
                    assert (await process.stdout.readline()).strip() == b"connected"
                await wait_for(sub, is_status(True))
            finally:
                process.kill()  # no clean disconnect: the broker sends the will
                await process.wait()
            _, will, _ = await wait_for(sub, is_status(False))
            assert will["reason"] == "connection lost" and will["schema"] == "coach.v1"
        async with subscriber(broker, f"{PREFIX}/{athlete}/status") as late:
            _, retained, message = await wait_for(late, lambda t, p: True)
            assert message.retain and retained["online"] is False

    asyncio.run(scenario())


def test_only_authorised_clients_can_tune(broker: Mosquitto, athlete: str) -> None:
    config = mqtt_config(broker, remote_tuning=True)
    base = f"{PREFIX}/{athlete}"
    tuner = RemoteTuner(tuner_config())
    original = tuner.current

    async def scenario() -> None:
        for password in (None, "wrong"):  # no or bad credentials: refused by the broker
            with pytest.raises(aiomqtt.MqttCodeError, match=r"(?i)not authori[sz]ed"):
                async with aiomqtt.Client(
                    "127.0.0.1",
                    broker.port,
                    username=None if password is None else "coach",
                    password=password,
                    timeout=TIMEOUT_S,
                ):
                    pass
        async with (
            subscriber(broker, f"{base}/config/#") as coach,
            MqttPublisher(config, athlete, environ=RUNNER_ENV, tuner=tuner) as pub,
        ):
            await wait_for(coach, lambda t, p: t.endswith("/current"))
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, username="viewer", password=USERS["viewer"]
            ) as viewer:  # authenticated but read-only: the ACL drops its publish
                await viewer.publish(
                    f"{base}/config/set", json.dumps({"cues": {"min_gap_s": 1.0}}), qos=1
                )
            update = {"cues": {"rules": [{"name": "pelvic_drop", "high": 6.5}]}}
            await coach.publish(f"{base}/config/set", json.dumps(update), qos=1)
            _, current, _ = await wait_for(
                coach, lambda t, p: t.endswith("/current") and p["revision"] == 1
            )
            applied = pub.config_updates.get_nowait()
            assert pub.config_updates.empty()  # the viewer's update never arrived
            assert applied.cues.min_gap_s == original.cues.min_gap_s
            assert applied.cues.rules[0].high == 6.5
            assert current["config"]["cues"]["rules"][0]["high"] == 6.5
            assert current["config"]["cues"]["min_gap_s"] == original.cues.min_gap_s
            assert pub.stats.config_accepted == 1 and pub.stats.config_rejected == 0

    asyncio.run(scenario())


def test_bad_remote_update_is_rejected_and_the_config_stays(
    broker: Mosquitto, athlete: str
) -> None:
    config = mqtt_config(broker, remote_tuning=True)
    base = f"{PREFIX}/{athlete}"
    tuner = RemoteTuner(tuner_config())
    original = tuner.current
    good = json.dumps({"cues": {"min_gap_s": 4.0}})

    def is_error(topic: str, payload: dict[str, Any]) -> bool:
        return topic.endswith("/error")

    async def scenario() -> None:
        async with subscriber(broker, f"{base}/config/#") as coach:
            # A retained update would be re-applied at every reconnect: it is refused.
            await coach.publish(f"{base}/config/set", good, qos=1, retain=True)
            async with MqttPublisher(config, athlete, environ=RUNNER_ENV, tuner=tuner) as pub:
                _, error, _ = await wait_for(coach, is_error)
                assert "retained updates are ignored" in error["problems"][0]
                await coach.publish(f"{base}/config/set", b"", qos=1, retain=True)  # cleared
                bad = {
                    "cues": {"rules": [{"name": "pelvic_drop", "persistence_n": 10}]},
                    "recording": {"directory": "/"},
                }
                await coach.publish(f"{base}/config/set", json.dumps(bad), qos=1)
                _, error, _ = await wait_for(coach, is_error)
                assert error["schema"] == "coach.v1" and error["type"] == "config_error"
                problems = "\n".join(error["problems"])
                assert "recording: cannot be changed remotely" in problems
                assert "cues.rules[pelvic_drop]: Value error, persistence_n (10)" in problems
                await coach.publish(f"{base}/config/set", b"{broken", qos=1)
                _, error, _ = await wait_for(coach, is_error)
                assert "not valid UTF-8 JSON" in error["problems"][0]
                assert pub.config_updates.empty()
                assert tuner.current is original
                await coach.publish(f"{base}/config/set", good, qos=1)
                _, current, message = await wait_for(
                    coach, lambda t, p: t.endswith("/current") and p["revision"] == 1
                )
                assert current["type"] == "config"
                assert current["config"]["cues"]["min_gap_s"] == 4.0
                assert pub.config_updates.get_nowait().cues.min_gap_s == 4.0
                assert pub.stats.config_rejected == 3 and pub.stats.config_accepted == 1
        async with subscriber(broker, f"{base}/config/current", user="viewer") as late:
            _, retained, message = await wait_for(late, lambda t, p: True)
            assert message.retain and retained["revision"] == 1

    asyncio.run(scenario())


def test_broker_restart_resumes_and_reports_drops(own_broker: Mosquitto, athlete: str) -> None:
    config = mqtt_config(own_broker, qos=1, queue_size=10)
    events = f"{PREFIX}/{athlete}/events"

    async def scenario() -> None:
        async with MqttPublisher(config, athlete, environ=RUNNER_ENV) as pub:
            async with subscriber(own_broker, f"{PREFIX}/{athlete}/#") as sub:
                await pub.connected.wait()
                for i in range(5):
                    pub.publish_event(event(i))
                await wait_for(sub, lambda t, p: t == events and p["seq"] == 4)
            own_broker.stop()
            # The core keeps going while the broker is away: 50 more, 10 fit the queue.
            for i in range(5, 55):
                pub.publish_event(event(i))
            assert pub.stats.dropped == 40
            async with asyncio.timeout(TIMEOUT_S):  # lost, and at least one retry failed
                await pub.wait_until(lambda: pub.stats.connect_failures >= 1)
            assert pub.stats.disconnects == 1
            own_broker.start()
            async with subscriber(own_broker, f"{PREFIX}/{athlete}/#") as sub:
                _, status, _ = await wait_for(
                    sub, lambda t, p: t.endswith("/status") and p["mqtt"]["reconnects"] >= 1
                )
                assert status["online"] is True and status["mqtt"]["dropped"] == 40
                assert status["counts"]["events"] == 55
                for i in range(55, 60):
                    pub.publish_event(event(i))
                seen: list[tuple[str, dict[str, Any]]] = []
                await wait_for(sub, lambda t, p: t == events and p["seq"] == 59, seen)
                seqs = [p["seq"] for t, p in seen if t == events]
                assert seqs == sorted(set(seqs)) and seqs[-1] == 59
                # The oldest were dropped (seq 4 may come again: QoS 1 is at least once).
                assert set(seqs) <= {4, *range(45, 60)}
                # Every message is sent or counted as dropped (the last PUBACK may be pending).
                assert pub.stats.sent + pub.stats.dropped in (59, 60)
                assert pub.stats.reconnects >= 1

    asyncio.run(scenario())


def test_broker_down_at_start_does_not_stop_the_run(tmp_path: Path, athlete: str) -> None:
    server = prepare_mosquitto(tmp_path / "mosquitto")  # configured, ports known, not running
    config = mqtt_config(server)
    events = f"{PREFIX}/{athlete}/events"

    async def scenario() -> None:
        async with MqttPublisher(config, athlete, environ=RUNNER_ENV) as pub:
            for i in range(3):
                pub.publish_event(event(i))
            assert pub.queued == 3 and not pub.connected.is_set()
            async with asyncio.timeout(TIMEOUT_S):
                await pub.wait_until(lambda: pub.stats.connect_failures >= 2)
            server.start()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    await pub.connected.wait()
                async with subscriber(server, f"{PREFIX}/{athlete}/#") as sub:
                    await wait_for(sub, is_status(True))
                    pub.publish_event(event(3))
                    _, last, _ = await wait_for(sub, lambda t, p: t == events and p["seq"] == 3)
                    assert last["type"] == "event"
                    assert pub.stats.sent == 4 and pub.stats.reconnects == 0
            finally:
                server.stop()

    asyncio.run(scenario())


def test_tls_with_a_throwaway_ca(broker: Mosquitto, athlete: str) -> None:
    certs = broker.certificates
    assert certs is not None
    over_tls = mqtt_config(broker, port=broker.tls_port, tls=True, ca_file=certs.ca)
    client_cert = mqtt_config(
        broker,
        port=broker.mtls_port,
        tls=True,
        ca_file=certs.ca,
        client_cert=certs.client_cert,
        client_key=certs.client_key,
        username_env=None,
        password_env=None,
    )

    async def scenario() -> None:
        for name, config in ((f"{athlete}_tls", over_tls), (f"{athlete}_mtls", client_cert)):
            async with (
                subscriber(broker, f"{PREFIX}/{name}/events") as sub,
                MqttPublisher(config, name, environ=RUNNER_ENV) as pub,
            ):
                pub.publish_event(event(1))
                _, got, _ = await wait_for(sub, lambda t, p: True)
                assert got["seq"] == 0 and got["t"] == event(1).t and got["athlete"] == name
        # Without the throwaway CA, the broker's certificate is not trusted.
        system_ca = tls_context(MqttConfig(tls=True))
        assert isinstance(system_ca, ssl.SSLContext)
        with pytest.raises(aiomqtt.MqttError, match=r"(?i)certificate verify failed"):
            async with aiomqtt.Client(
                "127.0.0.1",
                broker.tls_port,
                username="runner",
                password=USERS["runner"],
                tls_context=system_ca,
                timeout=TIMEOUT_S,
            ):
                pass

    asyncio.run(scenario())
