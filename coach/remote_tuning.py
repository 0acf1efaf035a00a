"""Remote tuning: partial config updates from a coach, merged, validated, applied between strides.

A coach publishes a partial config as JSON on ``<prefix>/<athlete>/config/set`` (see
``docs/mqtt.md``), for example ``{"cues": {"rules": [{"name": "pelvic_drop", "high": 6.5}]}}``.
:class:`RemoteTuner` turns it into a complete, validated :class:`~coach.config.CoachConfig`:

- Only the sections in :data:`REMOTE_SECTIONS` (``cues``) may appear; file paths, sensors,
  detection, audio, mqtt and recording are rejected with a reason.
- Tables merge key by key; lists are replaced, except ``cues.rules``, whose entries are matched
  by ``name`` and merged into the existing rule. ``null`` resets a key to its default.
- A remote update tunes the rules the runner started with: new rule names and changed
  ``phrases`` are rejected (speech is rendered once at start-up) unless the runtime allows it.
- The merged config is validated by :func:`coach.config.parse_config`; any problem rejects the
  whole update (:class:`~coach.errors.ConfigError`, one line per problem) and the current config
  stays as it was.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from coach.config import CoachConfig, parse_config
from coach.errors import ConfigError

#: Config sections a remote update may change.
REMOTE_SECTIONS: frozenset[str] = frozenset({"cues"})
#: Largest update accepted, bytes.
MAX_UPDATE_BYTES = 64 * 1024
#: Name of the update in error messages.
SOURCE = "remote config update"


def parse_update(payload: bytes | str) -> dict[str, Any]:
    """Decode an update: a UTF-8 JSON object of at most :data:`MAX_UPDATE_BYTES`.

    Raises:
        ConfigError: not JSON, not an object, or too large.

    """
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_UPDATE_BYTES:
        raise ConfigError(SOURCE, [f"(update): {size} bytes, at most {MAX_UPDATE_BYTES} allowed"])
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(SOURCE, [f"(update): not valid UTF-8 JSON: {error}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(SOURCE, ['(update): must be a JSON object such as {"cues": {...}}'])
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``base`` in place: tables recursively, ``None`` deletes a key."""
    for key, value in update.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _merge_rules(
    rules: list[dict[str, Any]], updates: Any, allow_new_phrases: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Merge rule entries matched by name; returns the new rules and the problems found."""
    if not isinstance(updates, list):
        return rules, ["cues.rules: must be a list of rule tables, each with its name"]
    problems: list[str] = []
    by_name = {rule["name"]: i for i, rule in enumerate(rules)}
    merged = copy.deepcopy(rules)
    seen: set[str] = set()
    for i, entry in enumerate(updates):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            problems.append(f"cues.rules.{i}: each entry needs the name of the rule it changes")
            continue
        label = f"cues.rules[{name}]"
        if name in seen:
            problems.append(f"{label}: given twice in one update")
            continue
        seen.add(name)
        if name not in by_name:
            if allow_new_phrases:
                merged.append(copy.deepcopy(entry))
            else:
                known = ", ".join(sorted(by_name)) or "none"
                problems.append(
                    f"{label}: no such rule (rules: {known}); a remote update tunes existing rules"
                )
            continue
        rule = merged[by_name[name]]
        if "phrases" in entry and entry["phrases"] != rule.get("phrases") and not allow_new_phrases:
            problems.append(
                f"{label}.phrases: cannot be changed remotely (speech is rendered at start-up)"
            )
            continue
        _merge(rule, entry)
    return merged, problems


def _name_rule_paths(problems: list[str], rules: list[dict[str, Any]]) -> list[str]:
    """Write ``cues.rules.3.high`` as ``cues.rules[pelvic_drop].high`` in problem lines."""

    def named(match: re.Match[str]) -> str:
        index = int(match.group(1))
        name = rules[index].get("name") if index < len(rules) else None
        return f"cues.rules[{name}]" if isinstance(name, str) else match.group(0)

    return [re.sub(r"cues\.rules\.(\d+)", named, line) for line in problems]


def apply_update(
    current: CoachConfig, update: Mapping[str, Any], allow_new_phrases: bool = False
) -> CoachConfig:
    """The config that results from applying ``update`` to ``current`` (which is not changed).

    Raises:
        ConfigError: a section that cannot change remotely, an unknown rule, or a merged config
            that does not validate; one line per problem.

    """
    problems = [
        f"{key}: cannot be changed remotely (allowed: {', '.join(sorted(REMOTE_SECTIONS))})"
        if key in CoachConfig.model_fields
        else f"{key}: unknown section (allowed: {', '.join(sorted(REMOTE_SECTIONS))})"
        for key in update
        if key not in REMOTE_SECTIONS
    ]
    data = current.model_dump(mode="json", exclude_unset=True)
    cues_update = update.get("cues")
    if "cues" in update and not isinstance(cues_update, Mapping):
        problems.append("cues: must be a table (JSON object)")
    elif isinstance(cues_update, Mapping):
        cues = data.setdefault("cues", {})
        rest = {k: v for k, v in cues_update.items() if k != "rules"}
        if "rules" in cues_update:
            rules = current.cues.model_dump(mode="json", exclude_unset=True).get("rules", [])
            cues["rules"], rule_problems = _merge_rules(
                rules, cues_update["rules"], allow_new_phrases
            )
            problems.extend(rule_problems)
        _merge(cues, rest)
    try:
        config = parse_config(data, SOURCE)
    except ConfigError as error:
        rules = data.get("cues", {}).get("rules", [])
        problems.extend(_name_rule_paths(error.problems, rules))
    if problems:  # every problem at once, so the coach can fix them in one go
        raise ConfigError(SOURCE, problems)
    return config


def tunable_view(config: CoachConfig) -> dict[str, Any]:
    """The remotely tunable sections of ``config``, as JSON-ready values (defaults included)."""
    data = config.model_dump(mode="json")
    return {section: data[section] for section in sorted(REMOTE_SECTIONS)}


class RemoteTuner:
    """Holds the effective config and applies remote updates to it, one at a time.

    The MQTT publisher calls :meth:`apply` for each update received and hands the returned
    config to the runtime, which swaps it in between strides.

    Args:
        config: the config the run started with.
        allow_new_phrases: accept new rules and changed phrases (only when the runtime can
            render speech for them while running).

    """

    def __init__(self, config: CoachConfig, allow_new_phrases: bool = False) -> None:
        self._current = config
        self.allow_new_phrases = allow_new_phrases
        #: Number of updates accepted so far.
        self.revision = 0

    @property
    def current(self) -> CoachConfig:
        """The effective config (the last accepted update applied)."""
        return self._current

    def apply(self, payload: bytes | str) -> CoachConfig:
        """Validate an update and make the result current.

        Raises:
            ConfigError: the update is rejected; the current config is unchanged.

        """
        config = apply_update(self._current, parse_update(payload), self.allow_new_phrases)
        self._current = config
        self.revision += 1
        return config

    def current_payload(self) -> dict[str, Any]:
        """What ``config/current`` shows: the revision and the tunable sections."""
        return {"revision": self.revision, "config": tunable_view(self._current)}
