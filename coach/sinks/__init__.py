"""Sinks: where the pipeline's outputs go (speech, MQTT, recordings, files, the terminal)."""
