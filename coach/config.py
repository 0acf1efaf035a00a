"""The config file: pydantic models of every section, loading and validation.

A config is a TOML file (see ``configs/default.toml``). Units are in the field names
(``_deg``, ``_s``, ``_ms``, ``_spm``, ``_hz``). Loading validates everything; a bad file raises
:class:`~coach.errors.ConfigError` with one line per problem naming the field path and what is
allowed.
"""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coach.errors import ConfigError
from coach.types import STRIDE_METRICS

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.toml"

LocationName = Literal["pelvis", "left_shank", "right_shank", "left_foot", "right_foot"]
MetricName = Literal[
    "contact_time_ms",
    "flight_time_ms",
    "cadence_spm",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "vertical_oscillation_cm",
    "impact_peak_g",
    "braking_mps",
]
assert set(typing.get_args(MetricName)) == set(STRIDE_METRICS)


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AthleteConfig(_Section):
    """Who is running."""

    name: str = Field("runner", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    athlete_file: Path | None = None


class SensorConfig(_Section):
    """One worn sensor: where it is, what firmware it speaks and how to find it."""

    location: LocationName
    profile: str = Field("coach-sim", min_length=1)
    address: str | None = None
    name: str | None = None
    required: bool = True


class DetectionConfig(_Section):
    """Parameters of the streaming detection core (stream/)."""

    min_cadence_spm: float = Field(100.0, ge=40.0, le=200.0)
    max_cadence_spm: float = Field(240.0, ge=120.0, le=300.0)
    stale_sensor_s: float = Field(0.5, gt=0.0, le=10.0)
    max_interpolated_gap_s: float = Field(0.1, ge=0.0, le=0.5)
    calibration_s: float = Field(4.0, ge=1.0, le=60.0)

    @model_validator(mode="after")
    def _cadence_order(self) -> DetectionConfig:
        if self.min_cadence_spm >= self.max_cadence_spm:
            raise ValueError("min_cadence_spm must be below max_cadence_spm")
        return self


QualityFlagName = Literal[
    "gap", "saturation", "stale_sensor", "missing_sensor", "mount_changed", "calibrating", "turning"
]
"""Names of :class:`coach.types.QualityFlag` (kept equal by a test)."""

#: Flags that mute every cue by default. Turning is not among them: it only voids the pelvic
#: rotation (its rules go silent through the missing value), the other metrics stay good.
DEFAULT_MUTE_ON: tuple[str, ...] = (
    "gap",
    "saturation",
    "stale_sensor",
    "missing_sensor",
    "mount_changed",
    "calibrating",
)


class CueRuleConfig(_Section):
    """One cue rule: which metric, the band, how persistent, what to say.

    Bandwidth feedback (Sherwood 1988; Lee & Carnahan 1990): silent while the k-stride moving
    value of ``metric`` stays inside the band, a cue only when it is outside for
    ``persistence_n`` of the last ``persistence_m`` evaluated strides (and at the current one).
    After a cue the rule is disarmed until the moving value comes back inside the band by
    ``hysteresis`` (metric units), or, when ``repeat_s`` is set, until that long has passed.

    The band is either absolute (``band = "absolute"``: ``low`` and/or ``high`` in the metric's
    units) or relative to the runner's baseline (``band = "baseline"``): the limit(s) are
    ``mean ± (baseline_sd × sd + baseline_delta)`` on the side(s) given by ``direction``, with
    mean and sd from the athlete file or the session's first steady strides.
    """

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    metric: MetricName
    side: Literal["left", "right", "either"] = "either"
    band: Literal["absolute", "baseline"] = "absolute"
    low: float | None = None
    high: float | None = None
    direction: Literal["above", "below", "both"] = "above"
    baseline_sd: float = Field(0.0, ge=0.0, le=10.0)
    baseline_delta: float = Field(0.0, ge=0.0)
    valid_min: float | None = None
    valid_max: float | None = None
    statistic: Literal["mean", "median"] = "mean"
    window_strides: int = Field(5, ge=1, le=50)
    persistence_n: int = Field(4, ge=1, le=50)
    persistence_m: int = Field(6, ge=1, le=50)
    hysteresis: float = Field(0.0, ge=0.0)
    cooldown_s: float = Field(30.0, ge=0.0, le=3600.0)
    repeat_s: float | None = Field(None, gt=0.0, le=3600.0)
    priority: int = Field(10, ge=0, le=100)
    phrases: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(min_length=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _band(self) -> CueRuleConfig:
        given = self.model_fields_set
        if self.band == "absolute":
            if self.low is None and self.high is None:
                raise ValueError("an absolute band needs low, high or both")
            if self.low is not None and self.high is not None:
                if self.low >= self.high:
                    raise ValueError(f"low ({self.low}) must be below high ({self.high})")
                if 2.0 * self.hysteresis >= self.high - self.low:
                    raise ValueError(
                        f"hysteresis ({self.hysteresis}) must be below half the band width "
                        f"({(self.high - self.low) / 2.0})"
                    )
            extra = sorted(given & {"direction", "baseline_sd", "baseline_delta"})
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply to band = 'baseline' (this band is 'absolute')"
                )
        else:
            extra = sorted(given & {"low", "high"})
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply to band = 'absolute'; a baseline band uses "
                    "baseline_sd and baseline_delta"
                )
            if self.baseline_sd <= 0.0 and self.baseline_delta <= 0.0:
                raise ValueError("a baseline band needs baseline_sd > 0 or baseline_delta > 0")
        if self.persistence_n > self.persistence_m:
            raise ValueError(
                f"persistence_n ({self.persistence_n}) must not exceed "
                f"persistence_m ({self.persistence_m})"
            )
        if (
            self.valid_min is not None
            and self.valid_max is not None
            and self.valid_min >= self.valid_max
        ):
            raise ValueError(
                f"valid_min ({self.valid_min}) must be below valid_max ({self.valid_max})"
            )
        return self


class FadingStep(_Section):
    """From ``from_minute`` of the session on, deliver ``fraction`` of the feedback."""

    from_minute: float = Field(ge=0.0, le=1440.0)
    fraction: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, data: Any) -> Any:
        """Accept ``[from_minute, fraction]`` pairs as well as tables."""
        if isinstance(data, list | tuple) and len(data) == 2:
            return {"from_minute": data[0], "fraction": data[1]}
        return data


class FadingConfig(_Section):
    """Faded feedback: full feedback early, progressively less (Winstein & Schmidt 1990).

    Gait retraining faded the feedback over the programme (Crowell & Davis 2011; Willy et al.
    2012). Modes:

    - ``none``: every eligible cue is delivered.
    - ``fraction``: from each step's ``from_minute`` on, that ``fraction`` of each rule's
      eligible cues is delivered, by a deterministic accumulator (no randomness).
    - ``blocks``: cycles of ``feedback_s`` with cues then ``probe_s`` without (no-feedback
      probe). When ``steps`` are given, each cycle's feedback block instead lasts
      ``fraction × (feedback_s + probe_s)``, the fraction in force at the cycle's start.

    A cue withheld by fading counts as given for the rule (it disarms and starts its cooldown)
    but not for the global gap, and is reported as a decision with reason ``fading``.
    """

    mode: Literal["none", "fraction", "blocks"] = "none"
    steps: list[FadingStep] = Field(default_factory=list)
    feedback_s: float = Field(120.0, gt=0.0, le=3600.0)
    probe_s: float = Field(60.0, ge=0.0, le=3600.0)

    @model_validator(mode="after")
    def _steps(self) -> FadingConfig:
        minutes = [step.from_minute for step in self.steps]
        if minutes != sorted(set(minutes)):
            raise ValueError("steps must have strictly increasing from_minute")
        if self.mode == "fraction" and not self.steps:
            raise ValueError("mode = 'fraction' needs at least one step in steps")
        if self.steps and self.steps[0].from_minute != 0.0:
            raise ValueError("the first of steps must start at from_minute = 0")
        return self


class BaselineConfig(_Section):
    """How a runner's baseline is taken when no athlete file gives it.

    Mean and sd of each metric over the first ``strides`` strides after the muted start that
    carry no muting quality flag (both sides pooled).
    """

    strides: int = Field(60, ge=5, le=5000)


class CuesConfig(_Section):
    """The cue engine: global pacing, muting, baseline, fading and the rules.

    Priorities: when several rules are eligible at one stride, the largest ``priority`` speaks
    (ties: the earlier rule in the file); the others wait. ``min_gap_s`` is the least time
    between two spoken cues, s. Strides carrying any flag in ``mute_on`` are not evaluated.
    """

    enabled: bool = True
    min_gap_s: float = Field(8.0, ge=0.0, le=600.0)
    mute_first_strides: int = Field(20, ge=0, le=1000)
    mute_on: list[QualityFlagName] = Field(
        default_factory=lambda: list(DEFAULT_MUTE_ON)  # type: ignore[arg-type]
    )
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    fading: FadingConfig = Field(default_factory=FadingConfig)
    rules: list[CueRuleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CuesConfig:
        names = [rule.name for rule in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique, repeated: {', '.join(duplicates)}")
        return self


class AudioConfig(_Section):
    """Speech rendering and playback."""

    output: Literal["device", "none"] = "device"
    voice: str = "en"
    rate_wpm: int = Field(175, ge=80, le=400)
    volume: float = Field(1.0, ge=0.0, le=1.0)
    output_latency_ms: float = Field(0.0, ge=0.0, le=1000.0)
    beat_aligned: bool = False


#: Environment variable names (POSIX portable): what ``username_env`` / ``password_env`` hold.
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class MqttConfig(_Section):
    """Live telemetry over MQTT and remote tuning of the cues (``docs/mqtt.md``).

    Secrets never live here: ``username_env`` and ``password_env`` name environment variables,
    ``password_file`` names a file (first line = password); they are read at connect time, never
    logged and never printed by ``coach config check``. Telemetry uses ``qos``; the retained
    ``status`` (with the last will) and the ``config/*`` topics use at least QoS 1.
    Reconnects back off exponentially with jitter from ``reconnect_min_s`` to ``reconnect_max_s``.
    ``remote_tuning`` lets a coach change the ``[cues]`` section through ``config/set``.
    """

    enabled: bool = False
    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    qos: Literal[0, 1, 2] = 0
    topic_prefix: str = Field(
        "coach", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
    )
    client_id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    username_env: str | None = Field(None, pattern=_ENV_NAME)
    password_env: str | None = Field(None, pattern=_ENV_NAME)
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    keepalive_s: int = Field(30, ge=5, le=3600)
    connect_timeout_s: float = Field(5.0, gt=0.0, le=120.0)
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0)
    reconnect_max_s: float = Field(30.0, gt=0.0, le=3600.0)
    status_interval_s: float = Field(5.0, gt=0.0, le=3600.0)
    remote_tuning: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give password_env or password_file, not both")
        if (self.password_env or self.password_file) and self.username_env is None:
            raise ValueError("a password needs username_env (the variable holding the user name)")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        tls_files = [
            name
            for name in ("ca_file", "client_cert", "client_key")
            if getattr(self, name) is not None
        ]
        if tls_files and not self.tls:
            raise ValueError(f"{', '.join(tls_files)} only apply with tls = true")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) must not exceed "
                f"reconnect_max_s ({self.reconnect_max_s})"
            )
        return self


class RecordingConfig(_Section):
    """Raw recording of live runs."""

    enabled: bool = True
    directory: Path = Path("recordings")
    flush_interval_s: float = Field(0.5, gt=0.0, le=1.0)


class CoachConfig(_Section):
    """The whole config file."""

    athlete: AthleteConfig = Field(default_factory=AthleteConfig)
    sensors: list[SensorConfig] = Field(default_factory=list)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    cues: CuesConfig = Field(default_factory=CuesConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)

    @model_validator(mode="after")
    def _unique_locations(self) -> CoachConfig:
        locations = [s.location for s in self.sensors]
        repeated = sorted({loc for loc in locations if locations.count(loc) > 1})
        if repeated:
            raise ValueError(f"each location may have one sensor, repeated: {', '.join(repeated)}")
        return self


def _field_constraints(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """Describe the allowed values of the field at ``loc`` (e.g. ``allowed: 0 to 20``)."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return ""
        info = current.model_fields.get(part)
        if info is None:
            return ""
        current = _model_in(info.annotation)
    if info is None:
        return ""
    lower = upper = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            lower = f"{'>=' if isinstance(meta, annotated_types.Ge) else '>'} {_value(meta)}"
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            upper = f"{'<=' if isinstance(meta, annotated_types.Le) else '<'} {_value(meta)}"
    bounds = " and ".join(b for b in (lower, upper) if b)
    if bounds:
        return f"allowed: {bounds}"
    literal = _literal_values(info.annotation)
    if literal:
        return "allowed: " + ", ".join(repr(v) for v in literal)
    return ""


def _value(meta: Any) -> Any:
    for name in ("ge", "gt", "le", "lt"):
        if hasattr(meta, name):
            return getattr(meta, name)
    return meta


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside ``annotation`` (list[X], X | None, X), or the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _literal_values(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        values = _literal_values(arg)
        if values:
            return values
    return ()


def _format_errors(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        path = ".".join(str(p) for p in loc) or "(file)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        hint = "" if item["type"] == "literal_error" else _field_constraints(CoachConfig, loc)
        problems.append(f"{path}: {message}" + (f" ({hint})" if hint else ""))
    return problems


def parse_config(
    data: dict[str, Any], source: str = "<config>", known_profiles: set[str] | None = None
) -> CoachConfig:
    """Validate a config given as a mapping (e.g. parsed TOML).

    Args:
        data: the parsed file.
        source: name used in error messages.
        known_profiles: firmware profile names that exist; when given, sensors must use one.

    Raises:
        ConfigError: one problem per line, each naming the field path and what is allowed.

    """
    try:
        config = CoachConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _format_errors(error)) from None
    if known_profiles is not None:
        problems = [
            f"sensors.{i}.profile: unknown profile {sensor.profile!r} "
            f"(allowed: {', '.join(sorted(known_profiles))})"
            for i, sensor in enumerate(config.sensors)
            if sensor.profile not in known_profiles
        ]
        if problems:
            raise ConfigError(source, problems)
    return config


def load_config(
    path: Path | str | None = None, known_profiles: set[str] | None = None
) -> CoachConfig:
    """Read and validate a TOML config file (the bundled default when ``path`` is None).

    Raises:
        ConfigError: the file is missing, not TOML, or invalid.

    """
    file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(str(file), [f"cannot read the file: {error.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(file), [f"not valid TOML: {error}"]) from None
    return parse_config(data, str(file), known_profiles)


_BAND_ONLY_KEYS = {
    "absolute": ("direction", "baseline_sd", "baseline_delta"),
    "baseline": ("low", "high"),
}


def config_to_toml_dict(config: CoachConfig) -> dict[str, Any]:
    """The effective config as a TOML-serialisable mapping that loads back to the same config.

    None values are left out, and so are the keys that do not apply to a rule's band.
    """
    data = config.model_dump(mode="json", exclude_none=True)
    for rule in data.get("cues", {}).get("rules", []):
        for key in _BAND_ONLY_KEYS.get(rule.get("band", "absolute"), ()):
            rule.pop(key, None)
    return data
