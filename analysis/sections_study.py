# The report's sections on what the study ran and what it decided: the first screen, each seed, the
# selected configurations, the study's plan, the verdict and its rules, collapsed runs, the searches,
# the paper's own gap, timing and provenance. Each writes its part of the document: the numbers come
# from the Analysis (analyse.py); a section only arranges the study's records into sentences and tables.
# sections_outcomes.py holds the sections on the confirmation runs' outcomes.
from __future__ import annotations

import json

import pandas as pd

from analysis import figures
from analysis.analyse import Analysis
from analysis.document import Doc, fmt_num, fmt_p, fmt_pair, fmt_pp, fmt_value
from analysis.first_screen import FirstScreen, dashboard_command, first_screen, stages_sentence
from analysis.paper import gap_rows
from analysis.sequential import Design
from analysis.stats import AlphaFamily
from analysis.tables import (
    BASELINE,
    CONFIRM,
    GAIN,
    PRIMARY_RULE,
    StudyTables,
    arm_label,
    fmt_alpha,
    model_line,
    run_status_counts,
)


def first_screen_section(doc: Doc, a: Analysis) -> FirstScreen:
    fs = first_screen(a)
    doc.h(1, fs.title)
    doc.open("summary")
    for line in fs.failures:
        doc.p(line, "failed")
    doc.p(fs.plain, "plain")
    if a.family.primary() is not None and a.family.primary().n:
        doc.figure("paired_difference", figures.paired_difference(a.family, a.verdict.margin),
                   "Equivalent: the 90% interval inside the shaded band; better or worse: the 95% interval clear of 0 "
                   "(one α, one look).")
    doc.table(fs.headers, fs.rows)
    doc.p(f"{fs.table_note} {fs.data}")  # one paragraph: the first screen is tight with the figure
    doc.p(f"Verdict: {fs.verdict}", "verdict")
    if fs.stages:
        doc.p(fs.stages)
    checks = " ".join(x for x in (fs.cross_check, fs.sensitivity) if x)
    if checks:
        doc.p(checks)
    doc.p(fs.take)
    doc.close()
    doc.p("Records:")
    doc.items(fs.records)
    for n in a.st.notes:
        doc.note(n)
    return fs


def per_seed_section(doc: Doc, a: Analysis) -> None:
    doc.h(2, "Per seed (test accuracy)")
    headers, rows = per_seed_rows(a.st.trials, a.family)
    if rows:
        doc.p("Each confirmation seed is shared by both arms (same data, order and initialisation). Differences in percentage points.")
        doc.table(headers, rows)
    else:
        doc.note("no confirmation runs yet.")


def per_seed_rows(trials: pd.DataFrame, family: AlphaFamily) -> tuple[list[str], list[list[str]]]:
    # seed | baseline | GAIN per alpha | difference per alpha (pp) | collapsed, diverged, warm-up picked?
    conf = trials[trials["phase"].astype(str) == CONFIRM].copy()
    conf["label"] = [arm_label(a, al) for a, al in zip(conf["arm"], conf["alpha"])]
    alphas = [c.alpha for c in family.comparisons] or sorted(conf.loc[conf["arm"] == GAIN, "alpha"].dropna().unique())
    labels = [BASELINE] + [arm_label(GAIN, a) for a in alphas]
    headers = ["seed"] + labels + [f"{arm_label(GAIN, a)} − baseline (pp)" for a in alphas] + ["collapsed, diverged or warm-up epoch selected?"]
    rows = []
    for seed in sorted(set(conf["seed"].astype(int))):
        cell: dict[str, tuple[str, float]] = {}
        flags = []
        for lab in labels:
            r = conf[(conf["seed"] == seed) & (conf["label"] == lab)]
            if r.empty:
                cell[lab] = ("—", float("nan"))
                continue
            r = r.iloc[0]
            status = str(r["status"])
            if status != "completed":
                cell[lab] = (status, float("nan"))
                flags.append(f"{lab} {status}")
                continue
            v = float(r["test_acc"]) if pd.notna(r["test_acc"]) else float("nan")
            if pd.notna(r["collapsed"]) and bool(r["collapsed"]):
                flags.append(f"{lab} collapsed")
            warm = r["selected_warmup"]
            if pd.notna(warm) and bool(warm):
                flags.append(f"{lab} selected warm-up epoch {int(r['best_epoch'])}: never trained with L_am")
            cell[lab] = (fmt_num(v), v)
        diffs = [fmt_pp(cell[arm_label(GAIN, a)][1] - cell[BASELINE][1]) for a in alphas]
        rows.append([str(seed)] + [cell[lab][0] for lab in labels] + diffs + ["; ".join(flags) or "no"])
    return headers, rows


def selected_section(doc: Doc, a: Analysis) -> None:
    st = a.st
    doc.h(2, "Selected hyperparameters")
    sel_rows = _selected_rows(st)
    cfg = st.config
    if not sel_rows:
        doc.note("study.json records no selected configurations: the study stopped before its selection finished.")
    sel_seeds = cfg.get("select_seeds")  # the selection seeds, as a list
    if isinstance(sel_seeds, list):
        sel_seeds = f"{len(sel_seeds)} selection seed(s) ({', '.join(map(str, sel_seeds))})"
    elif sel_seeds is not None:
        sel_seeds = f"{sel_seeds} selection seed(s)"
    doc.p(f"Selection rule: {cfg.get('select', 'overall')} validation accuracy"
          + (f"; top {cfg['selection_k']} search configurations per arm re-run" + (f" on {sel_seeds}" if sel_seeds else "")
             if cfg.get("selection_k") else "") + ". Trial ids are those of trials.parquet and the Tune folders.")
    if sel_rows:
        doc.table(["arm", "search trial", "selection trials", "selection objective", "validation accuracy",
                   "hyperparameters"], sel_rows)


def _selected_rows(st: StudyTables) -> list[list[str]]:
    # study.json "selected": each arm's winner, written by the launcher when the selection ends.
    rows = []
    for arm, d in (st.meta.get("selected") or {}).items():
        hp = d.get("hyperparameters", {}) or {}
        rows.append([str(arm), str(d.get("trial_id", "n/a")), ", ".join(map(str, d.get("select_trial_ids", []))) or "—",
                     fmt_num(d.get("objective"), 4), fmt_num(d.get("val_acc"), 4),
                     ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(hp.items()))])
    return rows


def study_section(doc: Doc, a: Analysis) -> None:
    st = a.st
    cfg = st.config
    doc.h(2, "Study")
    alphas = st.meta.get("confirm_alphas") or cfg.get("alphas")  # the confirmed alphas once the selection ended
    roles = st.meta.get("alpha_roles") or {}
    doc.table(["item", "value"], [
        ["confirmation seeds", str(cfg.get("seeds", "n/a"))],
        ["GAIN alphas confirmed", (", ".join(fmt_alpha(float(x)) for x in alphas) if isinstance(alphas, list) and alphas
                                   and all(isinstance(x, (int, float)) for x in alphas) else str(alphas or "tuned in the search"))
         + (f" (roles: {', '.join(f'{k} {fmt_alpha(float(v))}' for k, v in roles.items())})" if roles else "")],
        ["search trials per arm", ", ".join(f"{k} {v}" for k, v in (st.meta.get("search_split") or {}).items()) or "n/a"],
        ["preset", str(cfg.get("preset", "n/a"))],
        ["model", model_line(cfg.get("run_config") or {})],
        ["data", json.dumps(cfg.get("data", {}))],
        ["git commit", str(st.meta.get("git_commit", "n/a"))],
        ["dataset fingerprint", str(st.meta.get("dataset_fingerprint", "n/a"))],
        ["primary comparison rule", str(st.meta.get("primary_rule", PRIMARY_RULE))],
    ])
    counts = run_status_counts(st.trials)
    doc.p("Runs by phase, arm and status (stopped = ASHA early stop; select = re-runs of the top search configurations "
          "on selection seeds, validation only; only confirmation runs enter the statistics):")
    doc.table(["phase", "arm"] + list(counts.columns), [[ph, arm] + [str(v) for v in r] for (ph, arm), r in zip(counts.index, counts.to_numpy())])


def verdict_section(doc: Doc, a: Analysis) -> None:
    verdict, power = a.verdict, a.power
    doc.h(2, "Verdict")
    doc.p(verdict.sentence, "verdict")
    doc.p("Rules, fixed before the study ran (also in study.json, verdict_rules):")
    doc.items(list(verdict.rules))
    design = a.design or Design(verdict.margin, verdict.looks or (max(verdict.n_seeds, 1),))
    doc.p(f"Design, declared in study.json before the first trial: {design.describe()}.")
    stages = (a.st.meta.get("stages") or {}).get("stages") or []
    if stages:
        doc.p(stages_sentence(a))
        doc.table(["stage", "seeds", "paired", "verdict", "mean diff (pp)", "95% t interval (pp)", "90% t interval (pp)",
                   "Holm p", "level", "Holm TOST p", "level"],
                  [[str(d["stage"]), str(d["seeds"]), str(d.get("paired_seeds", "")), str(d["label"]),
                    fmt_pp(d.get("mean_difference")), fmt_pair(d.get("ci95")), fmt_pair(d.get("ci90")), fmt_p(d.get("p_holm")),
                    fmt_p(d.get("difference_level")), fmt_p(d.get("p_tost_holm")), fmt_p(d.get("equivalence_level"))]
                   for d in stages])
    doc.p(f"What this does not cover: {verdict.caveat}")
    if power is not None:
        doc.p(f"Power ({power.method}) assumes:")
        doc.items(list(power.assumptions) + ([power.note] if power.note else []))


def collapse_section(doc: Doc, a: Analysis) -> None:
    doc.h(2, "Collapsed and diverged runs")
    doc.p("A run is collapsed when it predicts one class for at least 95% of its test images or its test accuracy lies "
          "inside the central binomial 95% interval of chance. Both are outcomes of the method: they count in the "
          "primary analysis as they are (a diverged run has no test accuracy and leaves its pair).")
    doc.table(["arm", "confirmation runs", "completed", "collapsed (seeds)", "diverged (seeds)", "failed (seeds)"],
              [[o.label, str(o.runs), str(o.completed),
                ("not recorded" if not o.collapse_known else f"{len(o.collapsed_seeds)}" + (f" ({', '.join(map(str, o.collapsed_seeds))})" if o.collapsed_seeds else "")),
                f"{len(o.diverged_seeds)}" + (f" ({', '.join(map(str, o.diverged_seeds))})" if o.diverged_seeds else ""),
                f"{len(o.failed_seeds)}" + (f" ({', '.join(map(str, o.failed_seeds))})" if o.failed_seeds else "")]
               for o in a.outcomes])
    if a.collapse:
        doc.table(["GAIN α", "GAIN collapsed", "baseline collapsed", "Fisher's exact p (collapsed)", "Fisher's exact p (collapsed or diverged)"],
                  [[fmt_alpha(t.alpha), f"{t.gain_collapsed}/{t.gain_runs}", f"{t.baseline_collapsed}/{t.baseline_runs}",
                    fmt_p(t.fisher_p), fmt_p(t.failed_fisher_p) if t.failed_fisher_p is not None else "nothing diverged"]
                   for t in a.collapse])


def optuna_section(doc: Doc, a: Analysis) -> None:
    # The searches as Optuna recorded them: the history of each arm's objective, and fANOVA importances,
    # which optuna's plotting function computes as it draws them (with a fixed seed: see figures.py).
    st = a.st
    doc.h(2, "Hyperparameter search (Optuna)")
    if st.optuna_storage is None:
        doc.note("no Optuna storage found (optuna.db missing and none recorded in study.json).")
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    doc.p(f"Browse the searches: {dashboard_command(st.optuna_storage)}")
    # One storage object for the three look-ups: each URL string would build its own engine and check
    # the schema again (~0.3 s each).
    storage = optuna.storages.get_storage(st.optuna_storage)
    names = set(optuna.study.get_all_study_names(storage=storage))
    for arm in (BASELINE, GAIN):
        study_name = f"{st.name}-{arm}"
        if study_name not in names:
            doc.note(f"Optuna study {study_name!r} not in the storage (found: {sorted(names)}); {arm} search left out.")
            continue
        study = optuna.load_study(study_name=study_name, storage=storage)
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        if not done:
            doc.note(f"{study_name}: no completed trial; optimisation history left out.")
            continue
        doc.figure(
            f"optuna_history_{arm}",
            figures.optuna_history(study),
            f"{arm}: objective value (validation accuracy, fraction) of each of {len(done)} completed trials and the best "
            f"so far" + (f"; {len(pruned)} trials stopped early by ASHA are recorded as pruned and not drawn." if pruned else "."),
        )
        varying = [k for k in done[0].params if len({repr(t.params.get(k)) for t in done}) > 1]
        if len(done) < 2 or not varying:
            doc.note(f"{study_name}: parameter importances need >= 2 completed trials with a varying parameter "
                     f"({len(done)} completed, varying: {varying or 'none'}); left out.")
            continue
        try:
            fig = figures.optuna_importances(study)
        except (ValueError, RuntimeError) as e:  # e.g. a dynamic search space fANOVA cannot handle
            doc.note(f"{study_name}: parameter importances could not be computed ({type(e).__name__}: {e}).")
            continue
        doc.figure(f"optuna_importances_{arm}", fig, f"{arm}: fANOVA importance of each hyperparameter for validation accuracy.")


def paper_section(doc: Doc, a: Analysis) -> None:
    gap = a.gap
    doc.h(2, "The paper's own gap")
    doc.p("From the paper's numbers alone: one run per arm, 0.9762 without and 0.9788 with GAIN on 756 test images "
          "(A = without GAIN, B = with GAIN). Same numbers as `python -m analysis.paper`.")
    doc.table(["quantity", "value"], [list(r) for r in gap_rows(gap)])
    doc.p(f"Verdict on the paper: {gap.verdict}")
    if gap.equivalence is not None:
        doc.p(f"Equivalence on the paper's numbers: {gap.equivalence.sentence}")
    doc.p("Assumptions:")
    doc.items(list(gap.assumptions))


def timing_section(doc: Doc, a: Analysis) -> None:
    # Written by the study launcher (study.json "timing"): the last session's wall time per phase.
    timing = a.st.meta.get("timing")
    if not timing or not timing.get("phases"):
        return
    doc.h(2, "Where the time went")
    doc.p("Last session of the study. Trial parts are summed over trials; overhead is wall time x slots minus "
          "the trials' own time (Ray/Tune start-up, scheduling, restores, slots idle while a phase drains).")
    rows = [[name, f"{p['wall_s']:.0f}", str(p["trials"]), f"{p['train_s']:.0f}", f"{p['val_s']:.0f}",
             f"{p['test_s']:.0f}", f"{p['checkpoint_s']:.0f}", f"{p['overhead_s']:.0f}"]
            for name, p in timing["phases"].items()]
    doc.table(["phase", "wall s", "trials", "train s", "validation s", "test s", "checkpoint s", "overhead s"], rows)
    other = {k.removesuffix("_s").replace("_", " "): v for k, v in timing.items() if k.endswith("_s")}
    doc.p("; ".join(f"{k}: {v:.0f} s" for k, v in other.items()))


def provenance_section(doc: Doc, a: Analysis) -> None:
    st = a.st
    if st.meta.get("versions"):
        doc.h(2, "Provenance")
        doc.table(["package", "version"], [[k, str(v)] for k, v in st.meta["versions"].items()])
