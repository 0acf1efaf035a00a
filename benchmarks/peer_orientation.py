"""Orientation filters for benchmarks/peers.py, run inside coach's pelvic-angle pipeline.

Each filter is wrapped in an adapter with the small part of the ``vqf.VQF`` interface that
:class:`coach.stream.pelvis_orientation.PelvisTracker` uses (``updateBatch``, ``resetState``,
``getBiasEstimate``, ``setBiasEstimate``), so the mount calibration, heading, turn handling and
the Cardan Z-X'-Y'' decomposition are exactly coach's, and only the filter differs.

Every adapter returns ``quat6D``: unit quaternions [w, x, y, z] of the sensor→Earth rotation
(``v_earth = R(q) · v_sensor``, Earth z up, heading arbitrary), as VQF does. The conventions of
each library were checked at run time by :func:`check_convention` (gravity must map to +z).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coach.stream.pelvis_orientation import PelvisTracker, quaternion_to_matrix
from coach.types import FloatArray

STANDARD_GRAVITY = 9.80665


class _Adapter:
    """Base: per-sample filters with state carried across blocks."""

    name = "filter"
    settings = ""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.resetState()

    def resetState(self) -> None:  # noqa: N802 (the vqf.VQF interface)
        """Forget the orientation (a new session or a data gap)."""

    def getBiasEstimate(self) -> tuple[FloatArray, float]:  # noqa: N802
        """No gyro bias estimate is carried over gaps by these adapters."""
        return np.zeros(3), 0.0

    def setBiasEstimate(self, bias: FloatArray, sigma: float) -> None:  # noqa: N802
        """Ignored (see :meth:`getBiasEstimate`)."""

    def updateBatch(self, gyr: FloatArray, acc: FloatArray) -> dict[str, FloatArray]:  # noqa: N802
        """Run the filter over (n, 3) rad/s and m/s² samples; sensor→Earth quaternions."""
        raise NotImplementedError


class ImufusionAhrs(_Adapter):
    """x-io Technologies Fusion AHRS (``imufusion``), no magnetometer.

    Settings of Fusion's README example (gain 0.5, acceleration rejection 10°, recovery 5 s),
    gyroscope range ±2000 °/s (design.md section 8); the Python binding's defaults leave the
    range and the rejection at 0. Fusion holds the heading for its 3-s start-up.
    """

    name = "imufusion Ahrs"

    def resetState(self) -> None:  # noqa: N802
        import imufusion

        self._ahrs = imufusion.Ahrs()
        settings = imufusion.AhrsSettings(
            sample_rate=self.rate_hz,
            gain=0.5,
            gyroscope_range=2000.0,
            acceleration_rejection=10.0,
            magnetic_rejection=10.0,
            rejection_timeout=5.0,
        )
        self._ahrs.set_settings(settings)
        self.settings = (
            f"gain {settings.gain:g}, acc. rejection {settings.acceleration_rejection:g}°, "
            f"convention {imufusion.convention_to_string(settings.convention)}"
        )

    def updateBatch(self, gyr: FloatArray, acc: FloatArray) -> dict[str, FloatArray]:  # noqa: N802
        gyr_deg = np.degrees(gyr)
        acc_g = acc / STANDARD_GRAVITY
        out = np.empty((gyr.shape[0], 4))
        ahrs = self._ahrs
        for i in range(gyr.shape[0]):
            ahrs.update_no_magnetometer(gyr_deg[i], acc_g[i])
            out[i] = ahrs.get_quaternion()
        return {"quat6D": out}


class _AhrsPackage(_Adapter):
    """Filters of the ``ahrs`` package, per sample with ``updateIMU``, started from acc2q."""

    def _make(self) -> Any:
        raise NotImplementedError

    def resetState(self) -> None:  # noqa: N802
        self._filter = self._make()
        self._q: FloatArray | None = None

    def updateBatch(self, gyr: FloatArray, acc: FloatArray) -> dict[str, FloatArray]:  # noqa: N802
        from ahrs.common.orientation import acc2q

        out = np.empty((gyr.shape[0], 4))
        q = self._q if self._q is not None else acc2q(acc[0])
        update = self._filter.updateIMU
        for i in range(gyr.shape[0]):
            q = update(q, gyr[i], acc[i])
            out[i] = q
        self._q = q
        return {"quat6D": out}


class AhrsMadgwick(_AhrsPackage):
    """Madgwick gradient-descent filter (``ahrs.filters.Madgwick``), library default gain."""

    name = "ahrs Madgwick"

    def _make(self) -> Any:
        from ahrs.filters import Madgwick

        f = Madgwick(frequency=self.rate_hz)
        self.settings = f"beta {f.gain:g}"
        return f


class AhrsMahony(_AhrsPackage):
    """Mahony complementary filter (``ahrs.filters.Mahony``), library default gains."""

    name = "ahrs Mahony"

    def _make(self) -> Any:
        from ahrs.filters import Mahony

        f = Mahony(frequency=self.rate_hz)
        self.settings = f"k_P {f.k_P:g}, k_I {f.k_I:g}"
        return f


class FilterPelvisTracker(PelvisTracker):
    """coach's PelvisTracker with its VQF swapped for another filter (same everything else)."""

    def __init__(self, rate_hz: float, adapter: _Adapter) -> None:
        super().__init__(rate_hz)
        self._vqf = adapter  # type: ignore[assignment]
        self.reset()


def check_convention(adapter: _Adapter, gyr: FloatArray, acc: FloatArray) -> float:
    """Mean angle (degrees) between R(q)·acc and Earth +z over a run: small when sensor→Earth.

    A filter returning Earth→sensor quaternions would give ~2× the tilt instead; the caller
    rejects such an adapter rather than score it.
    """
    quat = adapter.updateBatch(gyr, acc)["quat6D"]
    adapter.resetState()
    earth = np.einsum("nij,nj->ni", quaternion_to_matrix(quat), acc)
    mean = earth.mean(axis=0)
    return float(np.degrees(np.arccos(np.clip(mean[2] / np.linalg.norm(mean), -1.0, 1.0))))
