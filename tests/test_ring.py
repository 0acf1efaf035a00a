from __future__ import annotations

import numpy as np

from coach.stream.ring import TimeRing


def test_ring_keeps_the_newest_rows_in_order() -> None:
    ring = TimeRing(capacity=10, width=2)
    t = np.arange(25, dtype=float)
    for a in range(0, 25, 7):
        ring.extend(t[a : a + 7], np.column_stack((t[a : a + 7], -t[a : a + 7])))
    times, values = ring.window(-1, 100)
    np.testing.assert_array_equal(times, np.arange(15, 25))
    np.testing.assert_array_equal(values[:, 1], -np.arange(15, 25))
    assert ring.last_t == 24


def test_ring_handles_a_block_larger_than_capacity() -> None:
    ring = TimeRing(capacity=4, width=1)
    ring.extend(np.arange(3.0), np.zeros((3, 1)))
    ring.extend(np.arange(3.0, 13.0), np.arange(3.0, 13.0)[:, None])
    times, values = ring.window(0, 100)
    np.testing.assert_array_equal(times, [9, 10, 11, 12])
    np.testing.assert_array_equal(values[:, 0], [9, 10, 11, 12])
    ring.extend(np.array([13.0]), np.array([[13.0]]))
    times, _ = ring.window(10.5, 100)
    np.testing.assert_array_equal(times, [11, 12, 13])
