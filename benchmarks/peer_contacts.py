"""Open-source contact detectors for benchmarks/peers.py, fed the same recordings as coach.

Every function takes one sensor's :class:`~coach.types.SampleBlock` (SI units, sensor frame as
mounted, as in the CSV session contract) and returns :class:`~coach.types.GaitEvent` values in
session time, so coach and the peers are scored by the same :func:`coach.evaluation.match_events`.
The peers are offline: their events get ``t_detected`` = the last sample of the recording.

Frames and units, as each peer's documentation asks:

* gaitmap (foot sensor frame, ``docs/source/user_guide/coordinate_systems.rst``): x to the tip
  of the shoe, y left, z up; acc m/s², gyr deg/s. gaitmap's own recommended alignment is used:
  ``align_dataset_to_gravity`` (static windows) → ``PcaAlignment`` (y = main rotation axis) →
  ``ForwardDirectionSignAlignment`` (sign of forward from a short trajectory), then
  ``convert_to_fbf`` → ``BarthDtw`` → ``RamppEventDetection``.
* mobgap (Mobilise-D lower-back body frame, ``mobgap.consts``, ``mobgap.utils.conversions``):
  ``acc_is`` up, ``acc_ml`` to the right, ``acc_pa`` forward (``INITIAL_MOBILISED_ORIENTATION``
  maps x→up, y→−left, z→forward); acc m/s², gyr deg/s. The sensor→body rotation is the one coach's
  :class:`~coach.stream.mount.MountCalibrator` reaches at the end of the recording (converged,
  i.e. known in advance: generous to the peers), so the peers never see a wrong frame.
  The whole session is one gait sequence.
* scikit-digital-health ``GaitLumbar``: acc in g, time as unix seconds; the same body-frame data
  with ``v_axis``/``ap_axis`` given; the whole session is one gait bout.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np

from coach.config import DetectionConfig
from coach.stream.mount import STANDARD_GRAVITY, MountCalibrator
from coach.types import EventKind, FloatArray, GaitEvent, SampleBlock, Side


def available(*modules: str) -> bool:
    """True when every module can be imported (checked without importing)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _offline(t: float, kind: EventKind, side: Side, end: float) -> GaitEvent:
    return GaitEvent(float(t), float(end), kind, side)


# --- frames --------------------------------------------------------------------------------------
def body_rotation(block: SampleBlock) -> FloatArray:
    """Sensor→body rotation (rows forward, left, up) from coach's mount calibration, converged.

    The last calibrated estimate of the whole recording; without one (too short), vertical from
    the mean specific force and forward from the sensor axis closest to horizontal.
    """
    rate = 1.0 / float(np.median(np.diff(block.t)))
    track = MountCalibrator(rate, DetectionConfig()).track(block)
    if track.calibrated.any():
        return np.asarray(track.rotation[np.flatnonzero(track.calibrated)[-1]])
    up = block.acc.mean(axis=0)
    up /= np.linalg.norm(up)
    axis = np.eye(3)[int(np.argmin(np.abs(up)))]
    forward = axis - up * float(axis @ up)
    forward /= np.linalg.norm(forward)
    return np.vstack([forward, np.cross(up, forward), up])


def mobgap_frame(block: SampleBlock, rotation: FloatArray) -> Any:
    """Mobilise-D body-frame DataFrame (acc m/s², gyr deg/s) of a lower-back sensor."""
    import pandas as pd

    acc = block.acc @ rotation.T
    columns = {"acc_is": acc[:, 2], "acc_ml": -acc[:, 1], "acc_pa": acc[:, 0]}
    gyr = np.zeros_like(acc) if block.gyr is None else np.degrees(block.gyr @ rotation.T)
    columns |= {"gyr_is": gyr[:, 2], "gyr_ml": -gyr[:, 1], "gyr_pa": gyr[:, 0]}
    return pd.DataFrame(columns)


# --- lower back ----------------------------------------------------------------------------------
MOBGAP_DETECTORS = ("IcdIonescu", "IcdShinImproved", "IcdHKLeeImproved")


def mobgap_ics(name: str, block: SampleBlock, rotation: FloatArray) -> list[GaitEvent]:
    """Initial contacts of one mobgap lower-back detector (library defaults), whole session."""
    from mobgap import initial_contacts

    rate = 1.0 / float(np.median(np.diff(block.t)))
    detector = getattr(initial_contacts, name)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.detect(mobgap_frame(block, rotation), sampling_rate_hz=rate)
    index = detector.ic_list_["ic"].to_numpy(dtype=int)
    index = index[(index >= 0) & (index < len(block))]
    end = float(block.t[-1])
    return [_offline(block.t[i], EventKind.INITIAL_CONTACT, Side.UNKNOWN, end) for i in index]


def skdh_events(block: SampleBlock, rotation: FloatArray) -> list[GaitEvent]:
    """ICs and final contacts (FC = IC + stance time) of scikit-digital-health ``GaitLumbar``."""
    from skdh.gait import GaitLumbar

    rate = 1.0 / float(np.median(np.diff(block.t)))
    duration = float(block.t[-1] - block.t[0])
    acc = block.acc @ rotation.T / STANDARD_GRAVITY
    epoch = 1.7e9  # skdh wants unix time; the session time is added to a fixed epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gait = GaitLumbar(min_bout_time=min(8.0, duration - 0.5))
        result = gait.predict(
            time=block.t + epoch,
            accel=acc,
            fs=rate,
            height=1.75,
            gait_pred=True,
            v_axis=2,
            ap_axis=0,
        )
    ic = np.asarray(result.get("IC Timestamp", []), float) - epoch
    stance = np.asarray(result.get("stance time", np.full(ic.shape, np.nan)), float)
    end = float(block.t[-1])
    events = [_offline(t, EventKind.INITIAL_CONTACT, Side.UNKNOWN, end) for t in ic]
    fc = ic + stance
    events += [
        _offline(t, EventKind.TOE_OFF, Side.UNKNOWN, end) for t in np.unique(fc[np.isfinite(fc)])
    ]
    return events


# --- feet ----------------------------------------------------------------------------------------
def gaitmap_events(left: SampleBlock, right: SampleBlock) -> list[GaitEvent]:
    """ICs and TOs of gaitmap BarthDtw + RamppEventDetection on two foot sensors (same clock)."""
    import pandas as pd
    from gaitmap.event_detection import RamppEventDetection
    from gaitmap.preprocessing import align_dataset_to_gravity
    from gaitmap.preprocessing.sensor_alignment import PcaAlignment
    from gaitmap.stride_segmentation import BarthDtw
    from gaitmap.utils.coordinate_conversion import convert_to_fbf
    from gaitmap_mad.preprocessing.sensor_alignment import ForwardDirectionSignAlignment

    rate = 1.0 / float(np.median(np.diff(left.t)))
    names = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
    blocks = {"left_sensor": left, "right_sensor": right}
    data = {
        key: pd.DataFrame(np.hstack([b.acc, np.degrees(b.gyr)]), columns=names)
        for key, b in blocks.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = align_dataset_to_gravity(data, rate)
        data = PcaAlignment(target_axis="y", pca_plane_axis=("gyr_x", "gyr_y")).align(data)
        data = ForwardDirectionSignAlignment().align(data.aligned_data_, sampling_rate_hz=rate)
        body = convert_to_fbf(data.aligned_data_, left_like="left_", right_like="right_")
        strides = BarthDtw().segment(body, sampling_rate_hz=rate).stride_list_
        found = RamppEventDetection().detect(body, strides, sampling_rate_hz=rate)
    events: list[GaitEvent] = []
    end = max(float(left.t[-1]), float(right.t[-1]))
    for key, table in found.min_vel_event_list_.items():
        block = blocks[key]
        side = Side.LEFT if key.startswith("left") else Side.RIGHT
        ics = np.unique(np.concatenate([table["pre_ic"].to_numpy(), table["ic"].to_numpy()]))
        tos = np.unique(table["tc"].to_numpy())
        for kind, index in ((EventKind.INITIAL_CONTACT, ics), (EventKind.TOE_OFF, tos)):
            index = index[np.isfinite(index)].astype(int)
            index = index[(index >= 0) & (index < len(block))]
            events += [_offline(block.t[i], kind, side, end) for i in index]
    return sorted(events, key=lambda e: e.t)
