"""The one exception tree of coach.

Errors are raised only at the edges (config, profile, file, connect). Each message says what is
wrong and what to do; the CLI prints it and exits non-zero without a traceback.
"""

from __future__ import annotations


class CoachError(Exception):
    """Base of every error coach raises on purpose."""

    exit_code: int = 1


class ConfigError(CoachError):
    """The config file is missing, unreadable or invalid.

    ``problems`` holds one line per problem, each naming the field path and what is allowed.
    """

    exit_code = 2

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class SessionFormatError(CoachError):
    """A session folder or recording does not follow the documented format."""

    exit_code = 2


class ProfileError(CoachError):
    """A firmware profile is missing or invalid."""

    exit_code = 2


class DeviceError(CoachError):
    """A sensor could not be found, connected to or configured."""


class AudioError(CoachError):
    """Speech could not be rendered or played."""


class RecordingError(CoachError):
    """A recording could not be created or written (path, permissions, disk full)."""
