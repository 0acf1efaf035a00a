"""CSV session folders: the import/export contract of design.md section 4.

A folder holds one ``<location>.csv`` per sensor present, with the header exactly
``t,ax,ay,az,gx,gy,gz`` (or ``t,ax,ay,az`` without gyroscope): ``t`` in seconds, strictly
increasing, one time base for all files; specific force in m/s² including gravity and angular
rate in rad/s, both in the sensor frame as mounted. An optional ``meta.toml`` describes it.
Anything else in the folder (sub-folders such as ``truth/``, other non-CSV files) is ignored.
"""

from __future__ import annotations

import io
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from coach.errors import SessionFormatError
from coach.types import LOCATIONS, Location, SampleBlock

HEADER_WITH_GYRO = "t,ax,ay,az,gx,gy,gz"
HEADER_ACC_ONLY = "t,ax,ay,az"


@dataclass(frozen=True)
class CsvSession:
    """A session read from (or to be written to) a CSV folder.

    Attributes:
        blocks: one block per sensor location present, the whole recording.
        meta: contents of ``meta.toml`` (empty when absent).

    """

    blocks: dict[Location, SampleBlock]
    meta: dict[str, Any] = field(default_factory=dict)


def _parse_file(path: Path) -> SampleBlock:
    location = Location(path.stem)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SessionFormatError(f"{path}: cannot read the file: {error.strerror}") from None
    first_line, _, body = text.partition("\n")
    header = first_line.strip().replace(" ", "")
    if header not in (HEADER_WITH_GYRO, HEADER_ACC_ONLY):
        raise SessionFormatError(
            f"{path}:1: header is {first_line.strip()!r}; expected exactly "
            f"{HEADER_WITH_GYRO!r} or {HEADER_ACC_ONLY!r}"
        )
    columns = header.count(",") + 1
    if not body.strip():
        raise SessionFormatError(f"{path}: no samples after the header")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise SessionFormatError(f"{path}: {_locate_bad_line(body, columns, error)}") from None
    if data.shape[1] != columns:
        raise SessionFormatError(f"{path}: {_locate_bad_line(body, columns, ValueError())}")
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if bad.size:
        raise SessionFormatError(
            f"{path}:{bad[0] + 2}: value is NaN or infinite ({bad.size} such rows)"
        )
    t = data[:, 0]
    not_increasing = np.flatnonzero(np.diff(t) <= 0)
    if not_increasing.size:
        line = not_increasing[0] + 3
        raise SessionFormatError(
            f"{path}:{line}: t is not strictly increasing "
            f"({t[not_increasing[0] + 1]!r} after {t[not_increasing[0]]!r})"
        )
    gyr = np.ascontiguousarray(data[:, 4:7]) if columns == 7 else None
    return SampleBlock(location, np.ascontiguousarray(t), np.ascontiguousarray(data[:, 1:4]), gyr)


def _locate_bad_line(body: str, columns: int, error: ValueError) -> str:
    """Find the first line that is not ``columns`` numbers, for the error message."""
    for number, line in enumerate(body.splitlines(), start=2):
        if not line.strip():
            return f"line {number} is empty"
        values = line.split(",")
        if len(values) != columns:
            return f"line {number} has {len(values)} values, the header names {columns}"
        try:
            [float(v) for v in values]
        except ValueError:
            return f"line {number} has a value that is not a number: {line.strip()!r}"
    return str(error)


def read_session(folder: Path | str) -> CsvSession:
    """Read a CSV session folder.

    Raises:
        SessionFormatError: the folder is missing or empty, a CSV has an unknown name, a bad
            header, missing or extra columns, a value that is not a number or NaN, or
            non-increasing ``t``; the message names the file and line.

    """
    path = Path(folder)
    if not path.is_dir():
        raise SessionFormatError(f"{path}: not a folder (a CSV session is a folder of CSVs)")
    csv_files = sorted(path.glob("*.csv"))
    unknown = [f.name for f in csv_files if f.stem not in LOCATIONS]
    if unknown:
        raise SessionFormatError(
            f"{path}: unknown file name(s) {', '.join(unknown)}; "
            f"expected <location>.csv with location one of {', '.join(LOCATIONS)}"
        )
    if not csv_files:
        raise SessionFormatError(
            f"{path}: no sensor CSV found; expected <location>.csv with location one of "
            f"{', '.join(LOCATIONS)}"
        )
    blocks = {Location(f.stem): _parse_file(f) for f in csv_files}
    meta: dict[str, Any] = {}
    meta_file = path / "meta.toml"
    if meta_file.is_file():
        try:
            meta = tomllib.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise SessionFormatError(f"{meta_file}: not valid TOML: {error}") from None
    return CsvSession(blocks, meta)


def write_session(folder: Path | str, session: CsvSession) -> None:
    """Write a CSV session folder (creating it), one file per block, plus ``meta.toml``.

    Values are written with enough digits to round-trip float64 time and 1e-6 SI resolution.
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for location, block in session.blocks.items():
        header = HEADER_WITH_GYRO if block.gyr is not None else HEADER_ACC_ONLY
        columns = [block.t[:, None], block.acc]
        if block.gyr is not None:
            columns.append(block.gyr)
        table = np.hstack(columns)
        fmt = ["%.9f"] + ["%.6f"] * (table.shape[1] - 1)
        with open(path / f"{Location(location).value}.csv", "w", encoding="utf-8") as out:
            out.write(header + "\n")
            np.savetxt(out, table, delimiter=",", fmt=fmt)
    if session.meta:
        (path / "meta.toml").write_text(tomli_w.dumps(session.meta), encoding="utf-8")
