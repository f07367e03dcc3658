"""The study's protocol: search -> selection -> confirmation, over typed objects.

1. search: each arm's own seeded TPE study and ASHA, half of --trials each (`phases.run_search`).
2. selection: each arm's top --selection-k search configurations re-run on --selection-seeds fresh
   seeds; the best mean objective wins (`select_winner`). With --selection-seeds 0 the best search
   trial wins (`search_winner`).
3. confirmation: both winners on --seeds shared seeds, GAIN at each of --alphas
   (`confirmation_configs`); with --max-seeds in stages until the four-way verdict is decided
   (`Protocol._confirm_in_stages`, the looks of `StudyConfig.design()`).

A winner carries its search trial's `RunConfig`; Tune's flat config dicts are written and read only
by `trainable.TrialConfig`. `phases.py` runs each phase as a Tune experiment; `timekeeper.py` keeps
the study's time.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainables.config import ARMS, RunConfig

from . import phases
from .plan import LONGEST_FIRST, StudyConfig
from .spaces import search_dims
from .timekeeper import Timekeeper
from .trainable import TrialConfig

Say = Callable[[str], None]


class NoWinner(RuntimeError):
    """Every search trial of an arm diverged or failed: there is nothing to confirm."""


# ---- winners ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Winner:
    arm: str
    trial_id: str  # the search trial whose configuration won
    objective: float  # its mean objective over the selection seeds (its search objective without selection)
    val_acc: float  # the same for validation accuracy
    config: RunConfig  # the search trial's run (its search seed and resources)
    hyperparameters: dict[str, Any]
    select_trial_ids: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "objective": self.objective, "val_acc": self.val_acc,
                "hyperparameters": self.hyperparameters, "select_trial_ids": list(self.select_trial_ids)}


def _finished(r: dict[str, Any]) -> bool:
    return r["status"] in ("completed", "stopped") and math.isfinite(r["objective"])


def top_search_trials(arm: str, rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The arm's k best search trials by objective (validation accuracy, ties broken by log loss);
    then a trial that ran to its end before one ASHA cut, then the earlier trial. Diverged and failed
    trials are never candidates."""
    eligible = [r for r in rows if r["arm"] == arm and r["phase"] == "search" and _finished(r)]
    if not eligible:
        raise NoWinner(f"no {arm} search trial finished with a validation score: every one diverged "
                       f"or failed; see the trial folders search-{arm}-* under search/ (error.txt)")
    eligible.sort(key=lambda r: (-r["objective"], r["status"] != "completed", r["seed"]))
    return eligible[:k]


def _hyperparameters(arm: str, run: RunConfig) -> dict[str, Any]:
    flat = run.to_flat()
    return {d.name: flat[d.key] for d in search_dims(arm, run)}


def search_winner(arm: str, rows: list[dict[str, Any]], runs: dict[str, RunConfig]) -> Winner:
    """Without a selection phase: the best search trial. `runs`: each search trial's RunConfig by trial id."""
    best = top_search_trials(arm, rows, 1)[0]
    run = runs[best["trial_id"]]
    return Winner(arm, best["trial_id"], best["objective"], best["val_acc"], run, _hyperparameters(arm, run))


def _with_resources(cfg: StudyConfig, run: RunConfig, **flat: Any) -> RunConfig:
    """A search trial's run on this session's resources (threads, device), with `flat` overrides."""
    return run.replace(**{"train.num_threads": cfg.base.train.num_threads, "train.device": cfg.base.train.device},
                       **flat)


def selection_configs(cfg: StudyConfig, tops: dict[str, list[dict[str, Any]]],
                      runs: dict[str, RunConfig]) -> list[TrialConfig]:
    """Each arm's candidates on every selection seed, GAIN's first (`LONGEST_FIRST`); `candidate` names
    the search trial re-scored."""
    return [TrialConfig("select", _with_resources(cfg, runs[r["trial_id"]], seed=seed), candidate=r["trial_id"])
            for arm in LONGEST_FIRST for seed in cfg.select_seeds for r in tops[arm]]


def select_winner(arm: str, tops: list[dict[str, Any]], select_rows: list[dict[str, Any]],
                  runs: dict[str, RunConfig]) -> Winner:
    """The candidate with the best mean objective over the selection seeds. A selection run that
    diverged or failed scores 0 (the worst), so a fragile configuration loses; ties go to the better
    search rank."""
    scored = []
    for rank, top in enumerate(tops):
        done = [r for r in select_rows if r["candidate"] == top["trial_id"]]
        objectives = [r["objective"] if _finished(r) else 0.0 for r in done]
        accs = [r["val_acc"] if _finished(r) else 0.0 for r in done]
        scored.append((sum(objectives) / max(len(done), 1), -rank, sum(accs) / max(len(done), 1), top, done))
    objective, _, val_acc, top, done = max(scored, key=lambda t: (t[0], t[1]))
    run = runs[top["trial_id"]]
    return Winner(arm, top["trial_id"], objective, val_acc, run, _hyperparameters(arm, run),
                  tuple(r["trial_id"] for r in done))


def confirmation_configs(cfg: StudyConfig, winners: dict[str, Winner]) -> tuple[list[TrialConfig], list[float]]:
    """Both arms on every confirmation seed; GAIN at each alpha. Pairs are adjacent so that an
    interrupted confirmation has whole pairs done; within a seed the GAIN runs come first, so the
    phase ends on a short baseline run."""
    alphas = cfg.resolve_alphas(winners["gain"].config.gain.alpha)
    out = []
    for seed in cfg.confirm_seeds:
        for arm in LONGEST_FIRST:
            for alpha in (alphas if arm == "gain" else [None]):
                extra = {} if alpha is None else {"gain.alpha": float(alpha)}
                out.append(TrialConfig("confirm", _with_resources(cfg, winners[arm].config, seed=seed, **extra)))
    return out, alphas


# ---- the protocol -------------------------------------------------------------------------------
def _rows(grids: list[Any]) -> tuple[list[dict[str, Any]], dict[str, RunConfig]]:
    """The trials-table rows of Tune results, and each trial's RunConfig by trial id."""
    from .records import result_rows

    rows, runs = [], {}
    for grid in grids:
        for res in grid:
            row = result_rows(res, load_run=False)[0]
            rows.append(row)
            runs[row["trial_id"]] = TrialConfig.from_tune(res.config).run
    return rows, runs


class Protocol:
    """One session of the study: runs (or resumes) its phases in order; each raises phases.Interrupted
    if it did not finish, and the search NoWinner if an arm has nothing to confirm. `grids` holds every
    experiment's results by name as they finish: the tables' input, also after an interruption."""

    def __init__(self, cfg: StudyConfig, run_dir: Path, trainable: Any, say: Say, clock: Timekeeper):
        self.cfg, self.run_dir, self.trainable, self.say, self.time = cfg, run_dir, trainable, say, clock
        self.grids: dict[str, Any] = {}

    def run(self) -> None:
        winners = self._select(self._search())
        self._declare(winners)
        with self.time.phase("confirm"):
            confirm = self._confirm_in_stages(winners) if self.cfg.sequential else phases.run_confirm(
                self.cfg, confirmation_configs(self.cfg, winners)[0], self.run_dir, self.trainable, self.time)
        for i, grid in enumerate(confirm):
            self.grids[f"confirm-{i + 1}"] = grid  # more than one after an extension (more --seeds or --alphas) or in stages

    def _search(self) -> tuple[list[dict[str, Any]], dict[str, RunConfig]]:
        with self.time.phase(phases.SEARCH_DIR):
            self.grids[phases.SEARCH_DIR] = phases.run_search(self.cfg, self.run_dir, self.trainable, self.time)
        rows, runs = _rows([self.grids[phases.SEARCH_DIR]])
        self.time.advance(rows, "search")
        return rows, runs

    def _select(self, search: tuple[list[dict[str, Any]], dict[str, RunConfig]]) -> dict[str, Winner]:
        rows, runs = search
        if not self.cfg.selection_seeds:
            return {arm: search_winner(arm, rows, runs) for arm in ARMS}
        tops = {arm: top_search_trials(arm, rows, self.cfg.selection_k) for arm in ARMS}
        with self.time.phase("select"):
            self.grids["select"] = phases.run_fixed(
                self.cfg, phases.SELECT_DIR, selection_configs(self.cfg, tops, runs), self.run_dir, self.trainable,
                self.time)
        select_rows, _ = _rows([self.grids["select"]])
        self.time.advance(select_rows, "select")
        return {arm: select_winner(arm, tops[arm], select_rows, runs) for arm in ARMS}

    def _declare(self, winners: dict[str, Winner]) -> None:
        """The winners and the confirmed alphas go to study.json (and the terminal) before confirmation."""
        from .records import update_study_record

        tuned = winners["gain"].config.gain.alpha
        update_study_record(self.run_dir, selected={arm: w.record() for arm, w in winners.items()},
                            confirm_alphas=self.cfg.resolve_alphas(tuned), alpha_roles=self.cfg.alpha_roles(tuned))
        what = "mean over selection seeds" if self.cfg.selection_seeds else "search"
        for arm, w in winners.items():
            hp = ", ".join(f"{k}={_fmt(v)}" for k, v in w.hyperparameters.items())
            self.say(f"  selected {arm}: val acc {w.val_acc:.4f} ({what}; search trial {w.trial_id}): {hp}")

    def _confirm_in_stages(self, winners: dict[str, Winner]) -> list[Any]:
        """--max-seeds: the confirmation in stages (the looks of cfg.design()), each stage one more
        `confirm-<n>/` experiment of the extension path (so every stage's runs are kept and a stopped
        study resumes). After each stage the four-way verdict on that stage's seeds at that look's
        nominal levels; the study stops at the first decided one or when the budget is spent. Each
        stage's verdict goes to study.json ("stages")."""
        import pandas as pd

        from analysis.verdict import stage_verdict

        from .records import update_study_record

        cfg = self.cfg
        design = cfg.design()
        done: dict[str, Any] = {}
        stages: list[dict[str, Any]] = []
        grids: list[Any] = []
        for look, n in enumerate(design.looks):
            configs, _ = confirmation_configs(dataclasses.replace(cfg, seeds=n, max_seeds=None), winners)
            grids = phases.run_confirm(cfg, configs, self.run_dir, self.trainable, self.time, done=done)
            rows, _ = _rows(grids)
            v = stage_verdict(pd.DataFrame(rows), design, look)
            last = look == len(design.looks) - 1
            stages.append(stage_record(v, look, n))
            stopped = (f"decided at stage {look + 1} of {len(design.looks)} ({n} seeds): {v.label}" if v.decided else
                       f"seed budget spent at stage {look + 1} ({n} seeds, --max-seeds {cfg.max_seeds}): {v.label}"
                       if last else "")
            update_study_record(self.run_dir, stages={"looks": list(design.looks), "stages": stages, "stopped": stopped})
            self.say(f"  stage {look + 1} of up to {len(design.looks)} ({n} seeds): {v.label}"
                     f" (Holm p {v.p_holm:.3g} vs {v.difference_level:.3g}; equivalence Holm p {v.p_tost_holm:.3g} vs "
                     f"{v.equivalence_level:.3g})" + (f"; stopping: {stopped}" if stopped else "; adding seeds"))
            if v.decided:
                break
        return grids


def stage_record(v: Any, look: int, n: int) -> dict[str, Any]:
    """One stage's verdict as study.json keeps it (plain numbers; NaN as None)."""
    def num(x: float) -> float | None:
        return float(x) if x is not None and math.isfinite(x) else None

    def iv(i: Any) -> list[float] | None:
        return [i.low, i.high] if i is not None else None

    return {"stage": look + 1, "seeds": n, "paired_seeds": v.n_seeds, "label": v.label,
            "alpha": num(v.alpha) if v.alpha is not None else None, "mean_difference": num(v.mean_difference),
            "ci95": iv(v.difference_ci), "ci90": iv(v.difference_ci90), "p_holm": num(v.p_holm),
            "p_tost_holm": num(v.p_tost_holm), "difference_level": v.difference_level,
            "equivalence_level": v.equivalence_level, "within_margin": v.within_margin}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
