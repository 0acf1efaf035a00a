"""The streaming core: pure, synchronous stages from samples to events, strides and flags."""
