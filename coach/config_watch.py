"""Live reload of the config file: poll it, validate the new text, apply it or keep the old one.

The runtime calls :meth:`ConfigWatcher.poll` between strides (or runs :meth:`ConfigWatcher.run`
as an asyncio task). A poll is cheap: one ``stat`` (modification time and size); the file is
read and hashed only when those changed, and applied only when its content hash changed. The
new file is validated completely first; a bad file is reported through ``on_error`` (once per
bad content) and the running config stays. Only the sections in ``reloadable`` may change
live (by default ``[cues]``); a change elsewhere is reported as needing a restart. Every
applied change is logged with its session time and the keys that changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coach.config import CoachConfig, config_to_toml_dict, load_config
from coach.errors import ConfigError

logger = logging.getLogger(__name__)

#: Config sections that may change while running (the rest needs a restart).
DEFAULT_RELOADABLE: frozenset[str] = frozenset({"cues"})


@dataclass(frozen=True)
class ConfigChange:
    """One applied reload.

    Attributes:
        t: session time of the poll that applied it, s.
        sha256: hex digest of the new file content.
        changed: dotted keys whose value changed (``cues.rules.pelvic_drop.high``).

    """

    t: float
    sha256: str
    changed: tuple[str, ...]


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted leaves of a config mapping; list entries with a ``name`` are keyed by it."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, Mapping) and "name" in v for v in value)
    ):
        for item in value:
            yield from _flatten(item, f"{prefix}.{item['name']}")
    else:
        yield prefix, value


def config_differences(old: CoachConfig, new: CoachConfig) -> tuple[str, ...]:
    """Dotted keys whose values differ between two configs, sorted."""
    before = dict(_flatten(config_to_toml_dict(old)))
    after = dict(_flatten(config_to_toml_dict(new)))
    return tuple(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))


class ConfigWatcher:
    """Watches one config file and hands over each new valid version.

    Args:
        path: the config file the run started with.
        on_change: called with the new config after it validated and was accepted.
        on_error: called with a one-paragraph message when a changed file is rejected.
        current: the config in force (default: the file as it is now, which must be valid).
        known_profiles: firmware profile names, checked as at start-up (None: not checked).
        reloadable: top-level sections that may change live; None allows every section.

    Raises:
        ConfigError: ``current`` is not given and the file is missing or invalid.

    """

    def __init__(
        self,
        path: Path | str,
        on_change: Callable[[CoachConfig], None],
        on_error: Callable[[str], None],
        current: CoachConfig | None = None,
        known_profiles: set[str] | None = None,
        reloadable: frozenset[str] | None = DEFAULT_RELOADABLE,
    ) -> None:
        self.path = Path(path)
        self._on_change = on_change
        self._on_error = on_error
        self._profiles = known_profiles
        self._reloadable = reloadable
        self._stat = self._stat_key()
        text = self._read()
        self._hash = hashlib.sha256(text or b"").hexdigest()
        self._rejected: str | None = None
        self.config = current if current is not None else load_config(self.path, known_profiles)
        self.history: list[ConfigChange] = []

    def _stat_key(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def _reject(self, digest: str, message: str) -> None:
        if digest != self._rejected:
            self._rejected = digest
            logger.warning("%s", message)
            self._on_error(message)

    def poll(self, now_s: float) -> CoachConfig | None:
        """Check the file; return the new config when one was applied now, else None.

        Args:
            now_s: session time of this poll, s (logged with an applied change).

        """
        stat = self._stat_key()
        if stat == self._stat:
            return None
        self._stat = stat
        data = self._read()
        if data is None:
            self._reject(
                "<missing>", f"{self.path}: cannot read the file; keeping the running config"
            )
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._hash:  # touched, or put back as it was
            self._rejected = None
            return None
        try:
            new = load_config(self.path, self._profiles)
        except ConfigError as error:
            problems = "\n  ".join(error.problems)
            self._reject(
                digest, f"{self.path}: not applied, keeping the running config:\n  {problems}"
            )
            return None
        changed = config_differences(self.config, new)
        fixed = sorted(
            {key.split(".", 1)[0] for key in changed} - (self._reloadable or set())
            if self._reloadable is not None
            else set()
        )
        if fixed:
            self._reject(
                digest,
                f"{self.path}: not applied, keeping the running config: "
                f"[{'], ['.join(fixed)}] changed, which needs a restart (live reload applies "
                f"[{'], ['.join(sorted(self._reloadable or ()))}] only)",
            )
            return None
        self._hash = digest
        self._rejected = None
        self.config = new
        change = ConfigChange(now_s, digest, changed)
        self.history.append(change)
        logger.info(
            "config %s reloaded at %.3f s: %s",
            self.path,
            now_s,
            ", ".join(changed) or "no effective change",
        )
        self._on_change(new)
        return new

    async def run(
        self,
        now: Callable[[], float],
        interval_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Poll every ``interval_s`` until cancelled (an asyncio task of the runtime).

        Args:
            now: the session clock, s.
            interval_s: time between polls, s.
            sleep: the awaitable sleep (replaceable in tests).

        """
        while True:
            self.poll(now())
            await sleep(interval_s)
