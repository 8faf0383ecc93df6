"""PruneNet: calibration-free structured pruning of LLMs by policy learning (ICLR 2025)."""

__version__ = "0.1.0"
