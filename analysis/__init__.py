# Is the GAIN gap real? Statistics, verdict and report on a study directory (runs/<name>/).
# Reads the study's result files only; never imports study/ or trainables/.
# Names resolve lazily: the report imports matplotlib and optuna, and
# `python -m analysis.paper` needs none of them.
from importlib import import_module

_WHERE = {
    "PaperGap": "paper",
    "paper_gap": "paper",
    "PAPER_DIFFERENCE": "power",
    "DecisionPower": "power",
    "decision_power": "power",
    "images_needed": "power",
    "seeds_needed": "power",
    "t_power": "power",
    "AlphaFamily": "stats",
    "CollapseTest": "stats",
    "collapse_tests": "stats",
    "family_power": "stats",
    "without_collapsed_pairs": "stats",
    "ArmSummary": "stats",
    "Interval": "stats",
    "LearningCurves": "stats",
    "McNemarCombined": "stats",
    "McNemarSeed": "stats",
    "PairedComparison": "stats",
    "TestResult": "stats",
    "compare_alphas": "stats",
    "compare_paired": "stats",
    "holm": "stats",
    "learning_curves": "stats",
    "mcnemar_over_seeds": "stats",
    "mcnemar_seed": "stats",
    "summarize_arms": "stats",
    "PRIMARY_RULE": "tables",
    "ArmOutcomes": "tables",
    "confirm_outcomes": "tables",
    "fmt_alpha": "tables",
    "StudyTables": "tables",
    "load_study": "tables",
    "paired_metric": "tables",
    "primary_alpha": "tables",
    "Design": "sequential",
    "boundaries": "sequential",
    "design_from_config": "sequential",
    "margin_problem": "sequential",
    "schedule": "sequential",
    "SeedModel": "simulation",
    "operating": "simulation",
    "proof_tables": "simulation",
    "seeds_to_decide": "power",
    "EQUIVALENT": "verdict",
    "INCONCLUSIVE": "verdict",
    "stage_verdict": "verdict",
    "GAIN_BETTER": "verdict",
    "GAIN_WORSE": "verdict",
    "NO_DIFFERENCE": "verdict",
    "Verdict": "verdict",
    "decide": "verdict",
    "make_verdict": "verdict",
    "write_report": "report",
    "summary_text": "report",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"analysis.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
