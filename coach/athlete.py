"""Athlete files: the runner's own baseline (mean and spread per stride metric) as TOML.

Written by ``coach baseline`` (default ``athletes/<name>.toml``) and referred to from the config
by ``[athlete] athlete_file = "athletes/<name>.toml"``; rules with ``band = "baseline"`` then use
``mean ± (baseline_sd × sd + baseline_delta)`` from this file instead of the session's first
strides. Example::

    name = "anna"
    created = "2025-05-01T10:12:00+00:00"
    sources = ["recordings/2025-04-28"]

    [metrics.pelvic_drop_deg]
    mean = 5.12     # degrees (units in the metric name)
    sd = 1.31
    n = 4210        # strides behind the figures

A relative ``athlete_file`` is taken relative to the current directory.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from coach.config import CoachConfig, MetricName
from coach.errors import ConfigError


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class MetricBaselineEntry(BaseModel):
    """Mean and sample sd of one metric over steady running, in the metric's units."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: Annotated[float, AfterValidator(_finite)]
    sd: Annotated[float, AfterValidator(_finite), Field(ge=0.0)]
    n: int = Field(ge=1)


class AthleteFile(BaseModel):
    """The contents of an athlete file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    created: str | None = None
    sources: list[str] = Field(default_factory=list)
    metrics: dict[MetricName, MetricBaselineEntry] = Field(default_factory=dict)

    def baseline(self) -> dict[str, tuple[float, float]]:
        """``(mean, sd)`` per metric name, as :class:`~coach.cues.CueEngine` takes it."""
        return {metric: (entry.mean, entry.sd) for metric, entry in self.metrics.items()}


def default_athlete_path(name: str) -> Path:
    """Where ``coach baseline --athlete NAME`` writes by default: ``athletes/<name>.toml``."""
    return Path("athletes") / f"{name}.toml"


def read_athlete_file(path: Path | str) -> AthleteFile:
    """Read and validate an athlete file.

    Raises:
        ConfigError: missing, not TOML, or invalid (one line per problem, naming the field).

    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            str(file),
            [f"cannot read the athlete file: {error.strerror} (create it with `coach baseline`)"],
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), [f"not valid TOML: {error}"]) from None
    try:
        return AthleteFile.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or '(file)'}: "
            + ("unknown key" if item["type"] == "extra_forbidden" else item["msg"])
            for item in error.errors()
        ]
        raise ConfigError(str(file), problems) from None


def write_athlete_file(path: Path | str, athlete: AthleteFile) -> Path:
    """Write an athlete file (creating its folder); returns the path written."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# coach athlete file: the runner's own baseline per stride metric (written by "
        "`coach baseline`).\n# Refer to it from the config: [athlete] athlete_file = "
        f'"{file.as_posix()}"\n# mean and sd are in the unit of the metric name; n = strides.\n\n'
    )
    body = tomli_w.dumps(athlete.model_dump(mode="json", exclude_none=True))
    file.write_text(header + body, encoding="utf-8")
    return file


def load_baseline(path: Path | str) -> dict[str, tuple[float, float]]:
    """``(mean, sd)`` per metric from an athlete file (raises :class:`ConfigError`)."""
    return read_athlete_file(path).baseline()


def athlete_baseline(config: CoachConfig) -> dict[str, tuple[float, float]] | None:
    """The baseline of the config's ``[athlete] athlete_file``, or None when none is set."""
    path = config.athlete.athlete_file
    return None if path is None else load_baseline(path)
