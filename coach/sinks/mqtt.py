"""Live telemetry over MQTT (aiomqtt): events, strides, cues and a retained status.

Never in the way of the core: ``publish_*`` only put a value on a bounded queue and return
(oldest dropped when full, drops counted). A background task drains the queue while connected;
a reconnect loop with jittered exponential backoff keeps trying when the broker is down at start
or goes away, and the status reports the drops. Topics and payloads: :mod:`.mqtt_schema` and
``docs/mqtt.md``.

Remote tuning: with ``remote_tuning = true`` and a :class:`ConfigTuner` (see
:mod:`coach.remote_tuning`), updates received on ``config/set`` are validated by the tuner;
accepted configs go to :attr:`MqttPublisher.config_updates` for the runtime to apply between
strides and are shown retained on ``config/current``; rejected ones get the reasons on
``config/error``.

Secrets come from the environment or a file named in the config, are read when the publisher
starts and are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import aiomqtt

from coach.config import CoachConfig, MqttConfig
from coach.errors import ConfigError
from coach.sinks import mqtt_schema as schema
from coach.types import Cue, GaitEvent, QualityChange, Stride

log = logging.getLogger(__name__)

#: QoS of the retained status, the last will and the config topics (at least this).
CONTROL_QOS = 1


class ConfigTuner(Protocol):
    """What the publisher needs for remote tuning (:class:`coach.remote_tuning.RemoteTuner`)."""

    def apply(self, payload: bytes) -> CoachConfig:
        """Validate an update; raise :class:`ConfigError` to reject it."""
        ...

    def current_payload(self) -> dict[str, Any]:
        """The effective tunable config, as shown on ``config/current``."""
        ...


@dataclass(frozen=True)
class Credentials:
    """User name and password for the broker (the password never shows in repr or logs)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)


def resolve_credentials(
    config: MqttConfig, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Read the user name and password named by the config (env variables or file).

    Raises:
        ConfigError: a named variable is unset or empty, or the password file is unreadable.
            The message names the variable or file, never its content.

    """
    env = os.environ if environ is None else environ

    def variable(key: str, name: str | None) -> str | None:
        if name is None:
            return None
        value = env.get(name)
        if not value:
            raise ConfigError("mqtt", [f"mqtt.{key}: environment variable {name} is not set"])
        return value

    username = variable("username_env", config.username_env)
    password = variable("password_env", config.password_env)
    if config.password_file is not None:
        try:
            lines = config.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or type(error).__name__
            raise ConfigError(
                "mqtt", [f"mqtt.password_file: cannot read {config.password_file}: {reason}"]
            ) from None
        if not lines or not lines[0]:
            raise ConfigError("mqtt", [f"mqtt.password_file: {config.password_file} is empty"])
        password = lines[0]
        with contextlib.suppress(OSError):
            if config.password_file.stat().st_mode & 0o077:
                log.warning(
                    "MQTT password file %s is readable by others: chmod 600 it",
                    config.password_file,
                )
    return Credentials(username, password)


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context of the config (``None`` without TLS); the host name is verified.

    Raises:
        ConfigError: the CA file or the client certificate/key cannot be loaded.

    """
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            "mqtt", [f"mqtt.ca_file: cannot load {config.ca_file}: {error}"]
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.client_cert is not None:
        try:
            context.load_cert_chain(
                str(config.client_cert),
                str(config.client_key) if config.client_key is not None else None,
            )
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(
                "mqtt", [f"mqtt.client_cert: cannot load {config.client_cert}: {error}"]
            ) from None
    return context


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Wait before reconnect ``attempt`` (0 = first retry), s.

    ``low·2^attempt`` capped at ``high``, jittered uniformly in its upper half so that many
    clients do not reconnect in step.
    """
    ceiling = min(high, low * 2.0 ** min(attempt, 60))
    return rng.uniform(ceiling / 2.0, ceiling)


@dataclass
class PublisherStats:
    """Counters of the publisher (``sent``, ``dropped``, ``reconnects`` are in the status).

    ``reconnects`` counts connections after the first, ``disconnects`` connections lost,
    ``connect_failures`` attempts that never connected.
    """

    sent: int = 0
    dropped: int = 0
    reconnects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    config_accepted: int = 0
    config_rejected: int = 0


@dataclass(frozen=True, slots=True)
class _Item:
    """One queued telemetry message: its topic kind, number, production time and value."""

    kind: str
    seq: int
    wall_time: float
    value: object


class MqttPublisher:
    """Publishes the run's telemetry to an MQTT broker without ever blocking the caller.

    Use as an async context manager; the ``publish_*`` methods return at once::

        async with MqttPublisher(config.mqtt, config.athlete.name) as mqtt:
            mqtt.publish_status({"sensors": {...}})
            for event in output.events:
                mqtt.publish_event(event)

    Args:
        config: the ``[mqtt]`` section.
        athlete: athlete name (``<prefix>/<athlete>/...`` topics).
        tuner: validates remote config updates; ``None`` (or ``remote_tuning = false``) keeps
            ``config/set`` unsubscribed.
        environ: where ``username_env`` / ``password_env`` are looked up (default ``os.environ``).
        flush_timeout_s: how long leaving the context may take to send what is queued and the
            offline status, s.
        rng: random source of the backoff jitter.

    """

    def __init__(
        self,
        config: MqttConfig,
        athlete: str,
        *,
        tuner: ConfigTuner | None = None,
        environ: Mapping[str, str] | None = None,
        flush_timeout_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.athlete = athlete
        self.topics = schema.Topics.of(config.topic_prefix, athlete)
        self.stats = PublisherStats()
        #: Accepted remote configs, in order, for the runtime to apply between strides.
        self.config_updates: asyncio.Queue[CoachConfig] = asyncio.Queue()
        #: Set while connected to the broker.
        self.connected = asyncio.Event()
        self._tuner = tuner if config.remote_tuning else None
        self._environ = environ
        self._flush_timeout_s = flush_timeout_s
        self._rng = rng or random.Random()
        self._queue: deque[_Item] = deque()
        self._inflight: _Item | None = None
        self._seq: dict[str, int] = dict.fromkeys(schema.TELEMETRY_TYPES, 0)
        self._status_seq = 0
        self._status_extra: dict[str, Any] = {}
        self._wake = asyncio.Event()
        self._status_due = asyncio.Event()
        self._closing = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._credentials = Credentials()
        self._tls: ssl.SSLContext | None = None
        self._ever_connected = False
        self._state_changed = asyncio.Condition()

    # ---- the producer side: never blocks, never raises on network trouble -------------------

    def publish_nowait(self, kind: str, payload: object) -> None:
        """Queue one telemetry message (``events``, ``strides``, ``cues`` or ``quality``).

        ``payload`` is a core output (:class:`GaitEvent`, :class:`Stride`, :class:`Cue`,
        :class:`QualityChange`) or a mapping of fields; it is encoded by the background task.
        When the queue is full the oldest message is dropped and counted.
        """
        if kind not in self._seq:
            raise ValueError(f"unknown telemetry kind {kind!r} (allowed: {', '.join(self._seq)})")
        seq = self._seq[kind]
        self._seq[kind] = seq + 1
        if len(self._queue) >= self.config.queue_size:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(_Item(kind, seq, time.time(), payload))
        self._notify(self._wake)

    def publish_event(self, event: GaitEvent) -> None:
        """Queue a foot-contact event on ``events``."""
        self.publish_nowait("events", event)

    def publish_stride(self, stride: Stride) -> None:
        """Queue a stance's metrics on ``strides``."""
        self.publish_nowait("strides", stride)

    def publish_cue(self, cue: Cue) -> None:
        """Queue a spoken cue on ``cues``."""
        self.publish_nowait("cues", cue)

    def publish_quality(self, change: QualityChange) -> None:
        """Queue a quality flag change on ``quality``."""
        self.publish_nowait("quality", change)

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Merge runtime facts (e.g. ``{"sensors": {...}}``) into the retained status, sent soon.

        Only the latest status matters, so it is never queued behind telemetry.
        """
        reserved = {"schema", "type", "athlete", "seq", "wall_time", "online", "counts", "mqtt"}
        self._status_extra.update({k: v for k, v in status.items() if k not in reserved})
        self._notify(self._status_due)

    @property
    def queued(self) -> int:
        """Messages waiting to be sent."""
        return len(self._queue) + (self._inflight is not None)

    def _notify(self, event: asyncio.Event) -> None:
        """Set ``event`` from the loop thread or, safely, from any other thread."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            event.set()
        else:
            self._loop.call_soon_threadsafe(event.set)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Read the secrets and TLS files (errors raise here), then start publishing.

        Raises:
            ConfigError: a secret or TLS file named in the config is missing or invalid.

        """
        self._credentials = resolve_credentials(self.config, self._environ)
        self._tls = tls_context(self.config)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._task = self._group.create_task(self._run(), name="mqtt-publisher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Send what is queued and the offline status (within ``flush_timeout_s``), disconnect."""
        assert self._group is not None and self._task is not None
        self._closing.set()
        self._wake.set()
        self._status_due.set()
        _, pending = await asyncio.wait({self._task}, timeout=self._flush_timeout_s)
        if pending:
            self._task.cancel()
        await self._group.__aexit__(exc_type, exc, tb)
        unsent = self.queued
        if unsent:
            self.stats.dropped += unsent
            self._queue.clear()
            self._inflight = None
            log.warning("MQTT: %d queued messages were not sent before closing", unsent)

    # ---- the background side -----------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        offline = self._status_payload(online=False, reason="connection lost")
        return aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self._credentials.username,
            password=self._credentials.password,
            identifier=self.config.client_id,
            will=aiomqtt.Will(self.topics.status, offline, CONTROL_QOS, retain=True),
            keepalive=self.config.keepalive_s,
            timeout=self.config.connect_timeout_s,
            tls_context=self._tls,
            logger=log.getChild("client"),
        )

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked at each connection state change.

        Changes: connected, connection lost, connection attempt failed. For example
        ``await mqtt.wait_until(lambda: mqtt.stats.connect_failures > 0)``.
        """
        async with self._state_changed:
            await self._state_changed.wait_for(predicate)

    async def _notify_state(self) -> None:
        async with self._state_changed:
            self._state_changed.notify_all()

    async def _run(self) -> None:
        """Connect, publish until closing, reconnect with backoff when the connection fails."""
        attempt = 0
        while not self._closing.is_set():
            was_connected, error = await self._connect_once()
            if was_connected:
                attempt = 0
                if error is not None:
                    self.stats.disconnects += 1
            else:
                self.stats.connect_failures += 1
            await self._notify_state()
            if error is None or self._closing.is_set():
                return
            delay = backoff_delay(
                attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
            )
            # Warn on the first failure after a success, then quietly keep trying.
            level = logging.WARNING if attempt == 0 else logging.DEBUG
            log.log(
                level,
                "MQTT broker %s:%d: %s; retrying in %.2f s (%d queued, %d dropped)",
                self.config.host,
                self.config.port,
                error,
                delay,
                self.queued,
                self.stats.dropped,
            )
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    async def _connect_once(self) -> tuple[bool, str | None]:
        """One connection's life: whether it connected, and what went wrong (``None``: closed)."""
        was_connected = False
        error: str | None = None
        try:
            async with self._client() as client:
                was_connected = True
                if self._ever_connected:
                    self.stats.reconnects += 1
                self._ever_connected = True
                self.connected.set()
                await self._notify_state()
                log.info("MQTT connected to %s:%d", self.config.host, self.config.port)
                await self._session(client)
        except* aiomqtt.MqttError as group:
            error = _first_message(group)
        finally:
            self.connected.clear()
        return was_connected, error

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish while connected; returns after a graceful close (offline status sent)."""
        if self._tuner is not None:
            await client.subscribe(self.topics.config_set, qos=CONTROL_QOS)
            await self._publish_config_current(client)
        async with asyncio.TaskGroup() as group:
            # The receiver also notices a lost connection (the message iterator raises).
            receiver = group.create_task(self._receive(client))
            status = group.create_task(self._status_loop(client))
            await self._drain(client)
            status.cancel()
            receiver.cancel()
        await client.publish(
            self.topics.status,
            self._status_payload(online=False, reason="stopped"),
            qos=CONTROL_QOS,
            retain=True,
        )

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send queued messages in order; returns when closing and the queue is empty."""
        while True:
            if self._inflight is None:
                if not self._queue:
                    if self._closing.is_set():
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._inflight = self._queue.popleft()
            item = self._inflight
            message = schema.envelope(
                schema.TELEMETRY_TYPES[item.kind], self.athlete, item.seq, item.wall_time
            )
            try:
                message.update(schema.fields_of(item.value))
            except TypeError as error:  # a caller's bug must not stop the publisher
                log.error("MQTT: dropped a %s message: %s", item.kind, error)
                self._inflight = None
                self.stats.dropped += 1
                continue
            await client.publish(
                self.topics.telemetry(item.kind), schema.encode(message), qos=self.config.qos
            )
            # Kept in flight until sent: a lost connection retries it first after reconnecting.
            self._inflight = None
            self.stats.sent += 1

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        """Retained online status at connect, on ``publish_status`` and every interval."""
        while not self._closing.is_set():
            self._status_due.clear()
            await client.publish(
                self.topics.status,
                self._status_payload(online=True),
                qos=CONTROL_QOS,
                retain=True,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.status_interval_s):
                    await self._status_due.wait()

    def _status_payload(self, online: bool, reason: str | None = None) -> bytes:
        counts = dict(self._seq)
        mqtt = {
            "sent": self.stats.sent,
            "dropped": self.stats.dropped,
            "queued": self.queued,
            "reconnects": self.stats.reconnects,
        }
        message = schema.envelope("status", self.athlete, self._status_seq, time.time())
        self._status_seq += 1
        message.update(schema.status_fields(online, counts, mqtt, self._status_extra, reason))
        return schema.encode(message)

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Handle ``config/set`` messages; raises :class:`aiomqtt.MqttError` on disconnect."""
        async for message in client.messages:
            if self._tuner is not None and message.topic.matches(self.topics.config_set):
                await self._handle_update(client, message)

    async def _handle_update(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        assert self._tuner is not None
        payload = message.payload
        raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        if not raw:
            return  # clearing a retained config/set: nothing to apply
        if message.retain:
            problems = ["(update): retained updates are ignored; publish config/set unretained"]
        else:
            try:
                config = self._tuner.apply(bytes(raw))
            except ConfigError as error:
                problems = error.problems
            else:
                self.stats.config_accepted += 1
                log.info("MQTT remote config update accepted")
                self.config_updates.put_nowait(config)
                await self._publish_config_current(client)
                return
        self.stats.config_rejected += 1
        log.warning("MQTT remote config update rejected: %s", "; ".join(problems))
        error_message = schema.envelope(
            "config_error", self.athlete, self.stats.config_rejected - 1, time.time()
        )
        error_message["problems"] = problems
        await client.publish(
            self.topics.config_error, schema.encode(error_message), qos=CONTROL_QOS
        )

    async def _publish_config_current(self, client: aiomqtt.Client) -> None:
        assert self._tuner is not None
        message = schema.envelope("config", self.athlete, self.stats.config_accepted, time.time())
        message.update(self._tuner.current_payload())
        await client.publish(
            self.topics.config_current, schema.encode(message), qos=CONTROL_QOS, retain=True
        )


def _first_message(group: BaseExceptionGroup[aiomqtt.MqttError]) -> str:
    """Text of the first error in a (nested) exception group."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    cause = error.__cause__
    text = str(error) or type(error).__name__
    return f"{text} ({cause})" if cause is not None and str(cause) else text
