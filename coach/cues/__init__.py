"""The cue engine: persistent form faults in, short spoken cues out (pure, synchronous)."""

from coach.cues.engine import CueDecision, CueEngine, CueRun, RuleStats, run_cues

__all__ = ["CueDecision", "CueEngine", "CueRun", "RuleStats", "run_cues"]
