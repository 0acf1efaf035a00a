"""coach: a real-time running-form coach for IMUs on the pelvis and shanks."""

__version__ = "0.1.0"
