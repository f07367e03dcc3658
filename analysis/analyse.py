# Everything the report and the terminal summary show, computed once from a study's tables: the
# report's sections and first screen only format an Analysis, and results.json is its record.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis.paper import PaperGap, paper_gap
from analysis.power import PAPER_DIFFERENCE, DecisionPower
from analysis.sequential import Design, design_from_config
from analysis.simulation import ProofRow, proof_tables
from analysis.stats import (
    AlphaFamily,
    ArmSummary,
    CollapseTest,
    LearningCurves,
    McNemarCombined,
    collapse_tests,
    compare_alphas,
    family_power,
    learning_curves,
    mcnemar_over_seeds,
    summarize_arms,
)
from analysis.tables import (
    ATTENTION_METRICS,
    CONFIRM,
    CONTENT_FREE,
    ArmOutcomes,
    StudyTables,
    confirm_outcomes,
    confirm_runs,
)
from analysis.verdict import Verdict, make_verdict

# Exploratory outcomes compared like the primary one (paired, Holm across the alphas), in this order.
SECONDARY_METRICS = ("worst_group_acc", "bias_conflicting_acc", "pointing_game", "energy_pointing_game", "iou")


@dataclass(frozen=True)
class ErrorRates:
    """The four-way verdict's error rates and power for this study's design, simulated on bimodal seed data."""
    reps: int  # simulated studies per cell
    n_alphas: int  # the family size the simulated verdicts take Holm over
    design: Design  # this study's design: the tables' first column
    tables: dict[str, list[ProofRow]]  # analysis.simulation.proof_tables


@dataclass(frozen=True)
class Analysis:
    st: StudyTables
    summaries: list[ArmSummary]
    family: AlphaFamily
    sensitivity: AlphaFamily | None  # without collapsed pairs; None when nothing collapsed
    warmup_sensitivity: AlphaFamily | None  # without GAIN runs that selected a warm-up epoch; None if none did
    outcomes: list[ArmOutcomes]
    collapse: list[CollapseTest]
    power: DecisionPower | None
    verdict: Verdict
    gap: PaperGap
    n_test_images: int | None
    content_free: dict[str, dict[str, float]]
    design: Design | None = None  # a staged study's declared design (None: one look)
    aso_iterations: int = 0  # of ASO's bootstrap (0: ASO left out)
    has_confirm: bool = False  # completed confirmation runs exist: the comparisons have something to compare
    secondary: dict[str, AlphaFamily] | None = None  # SECONDARY_METRICS with values; None without confirmation runs
    # McNemar per test image at the primary alpha: tested when there are confirmation runs, predictions.parquet
    # and a primary alpha; None when untested or when no seed has predictions of both arms.
    mcnemar_tested: bool = False
    mcnemar: McNemarCombined | None = None
    curves: LearningCurves | None = None  # of the confirmation runs; None without their per-epoch records
    error_rates: ErrorRates | None = None  # None: no margin declared, or not simulated (error_rate_reps=0)

    def record(self) -> dict[str, Any]:
        """results.json: every number of the report (the figures' names are added by the report)."""
        out: dict[str, Any] = {
            "study": self.st.name, "summaries": self.summaries, "family": self.family, "sensitivity": self.sensitivity,
            "warmup_sensitivity": self.warmup_sensitivity, "outcomes": self.outcomes, "collapse_tests": self.collapse,
            "power": self.power, "verdict": self.verdict, "paper_gap": self.gap,
            "design": (self.design or Design(self.verdict.margin, self.verdict.looks or (1,))).to_json(),
            "content_free": self.content_free,
        }
        if self.secondary:
            out["secondary"] = self.secondary
        if self.mcnemar_tested:
            out["mcnemar"] = self.mcnemar
        return out


def analyse(
    st: StudyTables, *, seed: int = 0, n_resamples: int = 9999, aso_iterations: int = 1000, power_reps: int = 4000,
    error_rate_reps: int = 2000,
) -> Analysis:
    # aso_iterations=0 and error_rate_reps=0 leave out the two slow parts (the terminal summary does).
    trials = st.trials
    done = confirm_runs(trials)  # completed confirmation runs: the only ones the statistics use
    summaries = summarize_arms(trials)
    declared = design_from_config(st.config)  # margin None: no study.json
    family = compare_alphas(trials, seed=seed, aso_iterations=aso_iterations, n_resamples=n_resamples,
                            margin=declared.margin)
    outcomes = confirm_outcomes(trials)
    collapse = collapse_tests(outcomes)
    sensitivity = None
    if any(o.collapsed_seeds for o in outcomes):
        sensitivity = compare_alphas(trials, seed=seed, full=False, exclude_collapsed=True)
    warmup_sensitivity = None
    if any(o.warmup_seeds for o in outcomes):
        warmup_sensitivity = compare_alphas(trials, seed=seed, full=False, exclude_warmup=True)
    power = family_power(family, PAPER_DIFFERENCE, reps=power_reps, seed=seed)
    # A staged study is judged at the last look whose seeds it has, with that look's levels; a one-stage
    # study (also one extended by more --seeds) at the plain levels of one look.
    design = declared if declared.sequential else None
    n_seeds = len(set(done["seed"])) if design is not None else 0
    verdict = make_verdict(family, power, outcomes, collapse, design, design.look_of(n_seeds) if design else None)
    n_test = None
    if st.predictions is not None and len(st.predictions) and "trial_id" in st.predictions:
        n_test = int(st.predictions.groupby("trial_id").size().max())
    cf: dict[str, dict[str, float]] = {}
    conf = trials[trials["phase"].astype(str) == CONFIRM]
    for kind in CONTENT_FREE:
        for m in ATTENTION_METRICS:
            col = f"{m}_{kind}"
            if conf[col].notna().any():
                cf.setdefault(kind, {})[m] = float(conf[col].dropna().mean())  # identical across runs of one study
    gap = paper_gap(margin_pp=100 * declared.margin) if declared.margin is not None else paper_gap()
    secondary = None
    if not done.empty:
        secondary = {m: compare_alphas(trials, m, full=False) for m in SECONDARY_METRICS if done[m].notna().any()}
    primary = family.primary()
    tested = not done.empty and st.predictions is not None and primary is not None
    return Analysis(st, summaries, family, sensitivity, warmup_sensitivity, outcomes, collapse, power, verdict,
                    gap, n_test, cf, design, aso_iterations=aso_iterations, has_confirm=not done.empty,
                    secondary=secondary, mcnemar_tested=tested,
                    mcnemar=mcnemar_over_seeds(st.predictions, primary.alpha) if tested else None,
                    curves=_confirm_curves(st), error_rates=_error_rates(verdict, design, error_rate_reps))


def _confirm_curves(st: StudyTables) -> LearningCurves | None:
    if st.epochs is None or st.epochs[st.epochs["phase"] == CONFIRM].empty:
        return None
    return learning_curves(st.epochs)


def _error_rates(v: Verdict, design: Design | None, reps: int) -> ErrorRates | None:
    if v.margin is None or reps <= 0:
        return None
    k = max(v.family_size, 1)
    own = design or Design(v.margin, (max(v.n_seeds, 2),))
    name = f"this study ({', '.join(map(str, own.looks))} seeds)"
    return ErrorRates(reps, k, own, proof_tables(v.margin, n_alphas=k, reps=reps, extra=((name, own),)))
