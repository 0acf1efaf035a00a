from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coach.stream.align import UniformResampler
from coach.types import Location, SampleBlock


def _signal(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    acc = np.column_stack((np.sin(3 * t), np.cos(2 * t), 9.81 + 0 * t))
    gyr = np.column_stack((t, -t, 0.5 * t))
    return acc, gyr


def _run(block: SampleBlock, cuts: list[int], rate: float = 200.0, fill: float = 0.05):
    resampler = UniformResampler(block.location, rate, fill)
    outputs, gaps = [], []
    edges = [0, *sorted(set(cuts)), len(block)]
    for a, b in itertools.pairwise(edges):
        out, found = resampler.update(block.slice(a, b))
        outputs.append(out)
        gaps.extend(found)
    t = np.concatenate([o.t for o in outputs])
    acc = np.vstack([o.acc for o in outputs])
    gyr = np.vstack([o.gyr for o in outputs if o.gyr is not None])
    return t, acc, gyr, gaps, resampler.stats


def _drifting_block(n: int = 2000, ppm: float = 100.0, drop: slice | None = None) -> SampleBlock:
    rng = np.random.default_rng(3)
    t = 0.0123 + np.arange(n) / (200.0 * (1 + ppm * 1e-6)) + rng.uniform(0, 1e-5, n)
    keep = np.ones(n, bool)
    if drop is not None:
        keep[drop] = False
    t = t[keep]
    acc, gyr = _signal(t)
    return SampleBlock(Location.PELVIS, t, acc, gyr)


def test_grid_is_uniform_and_values_interpolated() -> None:
    t, acc, gyr, gaps, _ = _run(_drifting_block(), [])
    np.testing.assert_allclose(np.diff(t), 1 / 200.0, atol=1e-12)
    expected_acc, expected_gyr = _signal(t)
    np.testing.assert_allclose(acc, expected_acc, atol=2e-4)
    np.testing.assert_allclose(gyr, expected_gyr, atol=1e-9)
    assert gaps == []


def test_short_holes_are_bridged_long_ones_stay_gaps() -> None:
    block = _drifting_block(drop=slice(100, 104))
    t, _, _, gaps, stats = _run(block, [])
    assert gaps == [] and stats.bridged_holes == 1
    block = _drifting_block(drop=slice(500, 560))
    t, _, _, gaps, stats = _run(block, [])
    assert len(gaps) == 1 and stats.gaps == 1
    assert gaps[0].t_end - gaps[0].t_start > 0.29
    inside = (t > gaps[0].t_start) & (t < gaps[0].t_end)
    assert not inside.any()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1999), max_size=30))
def test_any_block_split_gives_identical_output(cuts: list[int]) -> None:
    block = _drifting_block(drop=slice(700, 760))
    whole = _run(block, [])
    split = _run(block, cuts)
    for a, b in zip(whole[:3], split[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    assert whole[3] == split[3]
