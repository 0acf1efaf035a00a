"""The live terminal view of a run: per sensor link state and rate; last strides; cues.

On a terminal it redraws in place (rich); otherwise it prints one line per cue and per link
change and a summary line every few seconds, so logs stay readable.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from coach.types import Cue, Location, Stride

#: Seconds of packets over which the live rate is measured.
RATE_WINDOW_S = 2.0
#: Without a terminal, a summary line this often, s.
PLAIN_SUMMARY_S = 10.0


class LinkStatus(Protocol):
    """What the view needs of a sensor's connection change."""

    @property
    def location(self) -> Location:
        """The sensor."""

    @property
    def t(self) -> float:
        """Session time of the change, s."""

    @property
    def detail(self) -> str:
        """Why, in words."""

    @property
    def state(self) -> Any:
        """The new link state."""


@dataclass
class _Sensor:
    rate_hz: float
    state: str = "connecting"
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0


class LiveView:
    """Shows a run as it happens.

    Args:
        enabled: False for no output at all (tests, ``--no-view``).
        console: where to draw (stdout by default).

    """

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console()
        self._interactive = enabled and self.console.is_terminal
        self._sensors: dict[Location, _Sensor] = {}
        self._strides: deque[Stride] = deque(maxlen=6)
        self._cues: deque[Cue] = deque(maxlen=4)
        self._notes: deque[str] = deque(maxlen=3)
        self._live: Live | None = None
        self._last_plain = 0.0

    def start(self, rates_hz: dict[Location, float], state: str = "connecting") -> None:
        """Begin with the sensors, their nominal rates (Hz) and their first link state."""
        self._sensors = {loc: _Sensor(rate, state) for loc, rate in rates_hz.items()}
        if self._interactive:
            self._live = Live(self._render(0.0), console=self.console, auto_refresh=False)
            self._live.start()

    def stop(self) -> None:
        """Leave the terminal as it was."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def packet(self, location: Location, samples: int, t: float) -> None:
        """A notification of ``samples`` samples arrived at session time ``t`` (s)."""
        sensor = self._sensors.get(location)
        if sensor is None:
            return
        sensor.samples.append((t, samples))
        sensor.total += samples
        while sensor.samples and sensor.samples[0][0] < t - RATE_WINDOW_S:
            sensor.samples.popleft()

    def status(self, status: LinkStatus) -> None:
        """A sensor's link changed."""
        sensor = self._sensors.get(status.location)
        if sensor is not None:
            sensor.state = str(getattr(status.state, "value", status.state))
        self._plain(
            f"{status.t:7.1f} s  {status.location.value}: {sensor.state if sensor else ''}"
            + (f" ({status.detail})" if status.detail else "")
        )

    def stride(self, stride: Stride) -> None:
        """A stance was measured."""
        self._strides.append(stride)

    def cue(self, cue: Cue) -> None:
        """A cue was spoken."""
        self._cues.append(cue)
        self._plain(f'{cue.t:7.1f} s  cue {cue.rule}: "{cue.phrase}"')

    def note(self, text: str) -> None:
        """A one-line message (config reloaded, ...)."""
        self._notes.append(text)
        self._plain(text)

    def refresh(self, now: float) -> None:
        """Redraw (terminal) or print the periodic summary line (plain output)."""
        if self._live is not None:
            self._live.update(self._render(now), refresh=True)
        elif self.enabled and now - self._last_plain >= PLAIN_SUMMARY_S:
            self._last_plain = now
            rates = ", ".join(
                f"{loc.value} {self._rate(s, now):.0f} Hz {s.state}"
                for loc, s in self._sensors.items()
            )
            cadence = self._strides[-1].cadence_spm if self._strides else None
            print(f"{now:7.1f} s  cadence {_fmt(cadence, 0)} spm  {rates}", flush=True)

    def _plain(self, line: str) -> None:
        if self.enabled and not self._interactive:
            print(line, flush=True)

    @staticmethod
    def _rate(sensor: _Sensor, now: float) -> float:
        recent = [n for t, n in sensor.samples if t >= now - RATE_WINDOW_S]
        return sum(recent) / RATE_WINDOW_S

    def _render(self, now: float) -> Group:
        sensors = Table(title=f"coach live  {now:7.1f} s", expand=False)
        for column in ("sensor", "link", "rate Hz", "of nominal"):
            sensors.add_column(column)
        for location, sensor in self._sensors.items():
            rate = self._rate(sensor, now)
            share = f"{100 * rate / sensor.rate_hz:.0f} %" if sensor.rate_hz else "—"
            sensors.add_row(location.value, sensor.state, f"{rate:.0f}", share)
        strides = Table(title="last stances")
        for column in ("t s", "side", "cadence", "contact ms", "drop °", "rotation °", "flags"):
            strides.add_column(column)
        for s in reversed(self._strides):
            strides.add_row(
                f"{s.t:.1f}",
                s.side.value,
                _fmt(s.cadence_spm, 0),
                _fmt(s.contact_time_ms, 0),
                _fmt(s.pelvic_drop_deg, 1),
                _fmt(s.pelvic_rotation_deg, 1),
                ",".join(sorted(s.quality)),
            )
        cues = Table(title="cues")
        cues.add_column("t s")
        cues.add_column("cue")
        for cue in reversed(self._cues):
            cues.add_row(f"{cue.t:.1f}", cue.phrase)
        return Group(sensors, strides, cues, *self._notes)


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
