"""The study service: Ray Tune + Optuna search per arm, seed-paired confirmation, tables on disk.

Entry point: `python -m study.launch --help` (study.launch.main). Imports run one way: study -> trainables.
"""
from .plan import StudyConfig, UsageError, estimate
from .spaces import CONFIRM_SEED_BASE, ArmSpace, Dim, search_dims

__all__ = ["StudyConfig", "UsageError", "estimate", "CONFIRM_SEED_BASE", "ArmSpace", "Dim", "search_dims"]
