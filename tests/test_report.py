"""The session report: one offline HTML file whose plots and figures are there and render."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from coach.cli import main
from coach.config import load_config
from coach.report import ReportData, quality_intervals, render_report, symmetry_index
from coach.sources.simulate import (
    SimulationParams,
    parse_scenario,
    simulate,
    write_simulated_session,
)
from coach.types import Cue, Location, QualityChange, QualityFlag, Side, Stride

TITLES = (
    "Pelvic drop per stride",
    "Pelvic rotation per stride",
    "Contact time and cadence",
    "Distributions",
    "Left/right symmetry",
    "Data quality over time",
)
#: Colour of the left-side lines in the plots (#1f77b4); only an image can put it on screen.
LEFT_BLUE = np.array([0x1F, 0x77, 0xB4])


def _strides(n: int = 400, pelvis: bool = True) -> list[Stride]:
    rng = np.random.default_rng(2)
    strides = []
    for i in range(n):
        t = 0.35 * i
        strides.append(
            Stride(
                t=t,
                t_detected=t + 0.05,
                side=Side.LEFT if i % 2 == 0 else Side.RIGHT,
                contact_time_ms=float(rng.normal(250.0, 10.0)),
                cadence_spm=float(rng.normal(170.0, 3.0)),
                pelvic_drop_deg=float(rng.normal(5.0 + 3.0 * (i > 200), 1.0)) if pelvis else None,
                pelvic_rotation_deg=float(rng.normal(10.0, 1.0)) if pelvis else None,
                quality=frozenset({"gap"}) if 100 <= i < 104 else frozenset(),
            )
        )
    return strides


def _data(pelvis: bool = True) -> ReportData:
    strides = _strides(pelvis=pelvis)
    quality = [
        QualityChange(35.0, Location.PELVIS, QualityFlag.GAP, True),
        QualityChange(36.2, Location.PELVIS, QualityFlag.GAP, False),
    ]
    cues = [Cue(80.0, "pelvic_drop", "squeeze, relax, float", Side.LEFT)] if pelvis else []
    return ReportData(
        title="unit",
        source="memory",
        strides=strides,
        cues=cues,
        quality=quality,
        duration_s=strides[-1].t + 0.4,
        sensors=[],
        cues_config=load_config().cues,
    )


def _images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data)
        for data in re.findall(
            r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page
        )
    ]


def test_report_holds_every_plot_and_the_quality_figures() -> None:
    page = render_report(_data())
    images = _images(page)
    assert page.count("<img") == len(images) == len(TITLES)
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000 for png in images)
    for title in TITLES:
        assert f"<h3>{title}</h3>" in page
    assert re.search(r"<td>flagged strides</td><td>4 \(1\.0 %\)</td>", page)
    assert re.search(r"<tr><td>gap</td><td>4</td><td>1</td><td>1\.2</td></tr>", page)
    assert "<td>pelvic_drop</td><td>pelvic_drop_deg</td><td>–</td><td>7</td><td>1</td>" in page
    assert "squeeze, relax, float" in page


def test_report_is_offline_and_self_contained() -> None:
    page = render_report(_data())
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_report_without_a_pelvis_sensor_says_so() -> None:
    page = render_report(_data(pelvis=False))
    assert page.count("<img") == len(TITLES)
    assert "Pelvic drop" not in page.split("<h3>Metrics")[1].split("</table>")[0]


def test_helpers() -> None:
    assert symmetry_index(np.array([10.0]), np.array([11.0])) == pytest.approx(100 / 10.5)
    assert symmetry_index(np.array([]), np.array([1.0])) is None
    changes = [
        QualityChange(1.0, Location.PELVIS, QualityFlag.GAP, True),
        QualityChange(2.0, Location.PELVIS, QualityFlag.GAP, False),
        QualityChange(5.0, Location.LEFT_SHANK, QualityFlag.STALE_SENSOR, True),
    ]
    assert quality_intervals(changes, 9.0) == {
        ("pelvis", "gap"): [(1.0, 2.0)],
        ("left_shank", "stale_sensor"): [(5.0, 9.0)],
    }


@pytest.fixture(scope="module")
def session_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``coach report`` on a simulated CSV session folder with a drop fault and packet loss."""
    folder = tmp_path_factory.mktemp("report")
    run = simulate(
        SimulationParams(
            duration_s=45.0,
            seed=9,
            pelvic_drop_deg=4.0,
            packet_loss=0.01,
            scenario=parse_scenario("pelvic_drop_deg=4->10@20s"),
        )
    )
    write_simulated_session(run, folder / "session")
    out = folder / "out" / "report.html"
    assert main(["report", str(folder / "session"), "--out", str(out), "--quiet"]) == 0
    return out, out.read_text(encoding="utf-8")


def test_report_command_on_a_csv_session(session_report: tuple[Path, str]) -> None:
    _, page = session_report
    assert page.count("<img") == len(TITLES)
    assert "<h1>coach session report: session</h1>" in page
    for location in ("pelvis", "left_shank", "right_shank"):
        assert f"<tr><td>{location}</td><td>" in page
    gaps = re.findall(r"<tr><td>(?:pelvis|left_shank|right_shank)</td>(?:<td>[^<]*</td>){4}"
                      r"<td>(\d+)</td>", page)  # fmt: skip
    assert len(gaps) == 3 and sum(int(g) for g in gaps) > 0  # packet loss shows as gaps
    assert re.search(r"<td>duration</td><td>4[45]\.\d s \(0\.7 min\)</td>", page)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(session_report: tuple[Path, str]) -> None:
    from PIL import Image

    path, _ = session_report
    shot = path.with_name("screenshot.png")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1100,3000", f"--screenshot={shot}", path.resolve().as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (3000, 1100)
    blue = np.all(np.abs(pixels - LEFT_BLUE) <= 12, axis=2)
    assert blue.sum() > 500  # the plots' left-side lines are on screen: the images rendered


def test_report_command_on_a_raw_recording(tmp_path: Path) -> None:
    recording = tmp_path / "run.mcap"
    argv = ["simulate", "--out", str(recording), "--profile", "coach-sim", "--duration-s", "20",
            "--seed", "4", "--packet-loss", "0.01"]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "run.html"
    assert main(["report", str(recording), "--out", str(out), "--quiet"]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.count("<img") == len(TITLES)
    missing = re.findall(r"<tr><td>pelvis</td>(?:<td>[^<]*</td>){5}<td>(\d+)</td></tr>", page)
    assert len(missing) == 1 and int(missing[0]) > 0  # lost packets show as missing samples
