# The report's first screen: the answer in plain words, the per-arm table, the data, the verdict, what
# could change it, and where the records are. The same content opens the HTML page and report.md, is
# DIR/summary.txt, and is what the study launcher prints when a study ends (summary_text).
from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from analysis.analyse import Analysis, analyse
from analysis.document import fmt_ci, fmt_num, fmt_p, fmt_pp, text_table
from analysis.failures import could_change_sentence, failure_lines
from analysis.paper import PAPER_ACC_A, PAPER_ACC_B, PAPER_SPLIT
from analysis.power import PAPER_DIFFERENCE
from analysis.stats import AlphaFamily
from analysis.tables import BASELINE, GAIN, StudyTables, arm_label, fmt_alpha, load_study, model_name
from analysis.verdict import EQUIVALENT, GAIN_BETTER, GAIN_WORSE, Verdict

# The run folder's Tune experiments, named in the records; later stages or extensions of the
# confirmation add confirm-2/, confirm-3/, ...
TUNE_FOLDERS = ("search", "select", "confirm")


@dataclass(frozen=True)
class FirstScreen:
    title: str
    plain: str
    headers: list[str]
    rows: list[list[str]]
    table_note: str
    data: str
    verdict: str
    sensitivity: str
    take: str
    records: list[str]
    stages: str = ""  # how many stages ran and why the study stopped (staged studies)
    cross_check: str = ""  # baycomp's three probabilities beside the verdict
    failures: list[str] = field(default_factory=list)  # failed runs, shown above the verdict


def _alpha_roles(meta: dict) -> dict[float, str]:
    roles = meta.get("alpha_roles") or {}
    out: dict[float, str] = {}
    for role, a in roles.items():
        try:
            out[float(a)] = f"{role}" if role != "paper" else "paper's α"
        except (TypeError, ValueError):
            continue
    return out


def _role(alpha: float, roles: dict[float, str]) -> str:
    return next((r for a, r in roles.items() if math.isclose(a, alpha, rel_tol=1e-9, abs_tol=1e-12)), "")


def dashboard_command(storage: str) -> str:
    # An absolute path to the venv's optuna-dashboard, so the command runs as printed from any folder.
    exe = Path(sys.executable).parent / "optuna-dashboard"
    cmd = str(exe) if exe.is_file() else "optuna-dashboard"
    return f"{cmd} {storage} --host 127.0.0.1"


def records_lines(st: StudyTables) -> list[str]:
    run = st.run_dir.resolve()
    lines = []
    if st.optuna_storage is not None:
        lines.append(f"Optuna studies {st.name}-baseline, {st.name}-gain in {st.optuna_storage}; "
                     f"browse them with: {dashboard_command(st.optuna_storage)}")
    else:
        lines.append("optuna.db: not found.")
    tables = [n for n in ("trials.parquet", "epochs.parquet", "predictions.parquet", "attention.parquet", "examples.npz")
              if (run / n).is_file()]
    lines.append(f"Tables (pandas.read_parquet): {', '.join(str(run / n) for n in tables)}")
    extra = sorted((p.name for p in run.glob("confirm-*") if p.is_dir()), key=lambda n: int(n.split("-")[1])
                   if n.split("-")[1].isdigit() else 0)  # later stages or extensions of the confirmation
    folders = [str(run / d) + "/" for d in (*TUNE_FOLDERS, *extra) if (run / d).is_dir()]
    lines.append("Ray Tune experiments (per-trial params, results, checkpoints, errors): "
                 + (", ".join(folders) if folders else "none in this folder"))
    lines.append(f"Configuration and provenance: {run / 'study.json'}")
    return lines


def data_line(meta: dict) -> str:
    """What the study's data are (study.json "data_provenance"), next to the paper's split."""
    p = meta.get("data_provenance")
    fp = str(meta.get("dataset_fingerprint") or "n/a")[:12]
    paper = "the paper used {}/{}/{} images per class (train/val/test)".format(*PAPER_SPLIT)
    if not p:
        source = (meta.get("config") or {}).get("data", {}).get("source", "n/a")
        return f"Data: {source} (no provenance recorded); fingerprint {fp}; {paper}."
    # The launcher's own line (trainables.data.describe_provenance): source, layout, images per split.
    return f"Data: {p['summary']}; fingerprint {fp}; {paper}."


def first_screen(a: Analysis) -> FirstScreen:
    st, v = a.st, a.verdict
    roles = _alpha_roles(st.meta)
    out_by_label = {o.label: o for o in a.outcomes}
    acc = {s.label: s for s in a.summaries if s.metric == "test_acc"}
    labels = [o.label for o in a.outcomes] or list(acc)
    rows = []
    for lab in labels:
        s, o = acc.get(lab), out_by_label.get(lab)
        if o is not None and o.arm == GAIN:
            role = _role(o.alpha, roles)
            paper = f"{PAPER_ACC_B} (GAIN α=1)"
        else:
            role, paper = "", f"{PAPER_ACC_A}"
        runs = f"{s.n}" if s is not None else "0"
        if o is not None and o.runs != (s.n if s else 0):
            runs += f" of {o.runs}"
        collapsed = "n/a" if o is None or not o.collapse_known else str(len(o.collapsed_seeds))
        warm = str(len(o.warmup_seeds)) if o is not None and o.arm == GAIN else "-"
        rows.append([lab + (f" ({role})" if role else ""), runs, fmt_num(s.mean if s else None), fmt_num(s.sd if s else None),
                     fmt_ci(s.ci) if s else "n/a", collapsed, warm, str(len(o.diverged_seeds)) if o else "0", paper])
    table_note = ("Test accuracy of completed confirmation runs (fraction of the "
                  + (f"{a.n_test_images} " if a.n_test_images else "")
                  + "test images); 95% t interval over seeds, clipped to [0, 1]; warm-up: GAIN runs that selected "
                  "a warm-up epoch (never trained with L_am). The paper: one run per arm, 756 test images.")
    plain = _plain_words(a)
    sens = " ".join(x for x in (_sensitivity_sentence(a.sensitivity), _sensitivity_sentence(a.warmup_sensitivity)) if x)
    take = take_sentence(a)
    missing = could_change_sentence(st.trials, st.meta, v.label)
    return FirstScreen(f"Does GAIN help {model_name(st.config.get('run_config') or {})}? Study {st.name!r}", plain,
                       ["arm", "runs", "mean", "sd", "95% interval", "collapsed", "warm-up", "diverged",
                        "the paper (one run)"],
                       rows, table_note, data_line(st.meta), (v.brief or v.sentence) + (f" {missing}" if missing else ""),
                       sens, take, records_lines(st), stages_sentence(a), _cross_check_sentence(v),
                       failure_lines(st.trials, st.run_dir))


def _answer(v: Verdict) -> str:
    """The four-way answer as a reader would say it."""
    band = f"±{100 * v.margin:g} pp" if v.margin is not None else ""
    if v.label in (GAIN_BETTER, GAIN_WORSE):
        which = "better" if v.label == GAIN_BETTER else "worse"
        return (f"GAIN is {which} than the baseline" + (f", by less than the {band} margin" if v.within_margin else ""))
    if v.label == EQUIVALENT:
        return f"GAIN and the baseline are equivalent: their difference is shown to lie within {band} of test accuracy"
    if v.margin is None:
        return "Not decided: no difference is shown, and no equivalence margin was declared"
    return f"Not decided: neither a difference nor equivalence within {band} is shown"


def stages_sentence(a: Analysis) -> str:
    if a.design is None:
        return ""
    rec = a.st.meta.get("stages") or {}
    done = rec.get("stages") or []
    looks = ", ".join(map(str, a.design.looks))
    if not done:
        return f"Staged confirmation (looks at {looks} seeds): no stage recorded in study.json."
    ran = ", ".join(str(d["seeds"]) for d in done)
    why = rec.get("stopped") or "not finished: the last stage's verdict was undecided and the study was stopped early"
    return (f"Staged confirmation: {len(done)} of up to {len(a.design.looks)} stages ran ({ran} seeds; looks at "
            f"{looks}, O'Brien-Fleming spending). Stopped: {why}.")


def _cross_check_sentence(v: Verdict) -> str:
    b = v.bayes
    if b is None:
        return ""
    return (f"Cross-check, not the verdict: baycomp's Bayesian signed-rank test with a region of practical equivalence "
            f"of ±{100 * b.rope:g} pp gives P(GAIN worse) = {b.p_worse:.2f}, P(equivalent) = {b.p_equivalent:.2f}, "
            f"P(GAIN better) = {b.p_better:.2f}.")


def _plain_words(a: Analysis) -> str:
    """The verdict first, then the robust estimate (Hodges-Lehmann, with its interval) and the mean
    beside it, and any seed that alone moves the mean by more than its interval's half-width."""
    p = a.family.primary()
    if p is None or p.n == 0:
        return "No seed-paired confirmation runs of both arms yet: nothing to compare."
    acc = {s.label: s for s in a.summaries if s.metric == "test_acc"}
    b, g = acc.get(BASELINE), acc.get(arm_label(GAIN, p.alpha))
    hl = f"{fmt_pp(p.hodges_lehmann)} pp"
    if p.hodges_lehmann_ci is not None:
        hl += f" [{fmt_pp(p.hodges_lehmann_ci.low)}, {fmt_pp(p.hodges_lehmann_ci.high)}]"
    v = a.verdict
    margin = (f"margin ±{100 * v.margin:g} pp, declared before the first trial" if v.margin is not None
              else "no margin was declared")
    text = f"Verdict: {v.label}. {_answer(v)}"
    if v.lean:
        text += f"; the data lean towards {v.lean}"
        text += (f", and about {v.seeds_to_decide:,} paired seeds would probably decide" if v.seeds_to_decide else "")
    text += (f". Over {p.n} seed pair(s), GAIN α={fmt_alpha(p.alpha)} (best validation accuracy) minus the baseline, "
             f"in test accuracy: typical difference (Hodges-Lehmann, 95% signed-rank interval) {hl}; mean "
             f"{fmt_pp(p.mean_difference)} pp")
    if b is not None and g is not None:
        text += f" ({g.mean:.4f} vs {b.mean:.4f})"
    text += (f", 90% t interval {fmt_ci(p.difference_ci90, 100, signed=True)}, 95% "
             f"{fmt_ci(p.difference_ci, 100, signed=True)}; {margin}.")
    if p.influential:
        who = "; ".join(f"seed {seed} (difference {fmt_pp(p.differences[p.seeds.index(seed)])} pp): without it the mean "
                        f"moves {fmt_pp(shift)} pp, more than the other seeds' 95% half-width ({100 * half:.2f} pp)"
                        for seed, shift, half in p.influential)
        text += f" The mean leans on single seeds: {who}."
    return text


def _sensitivity_sentence(fam: AlphaFamily | None) -> str:
    sp = fam.primary() if fam is not None else None
    if sp is None:
        return ""
    return (f"Sensitivity analysis (declared; not the verdict), {fam.excluded}: GAIN α={fmt_alpha(sp.alpha)} minus "
            f"baseline = {fmt_pp(sp.mean_difference)} pp over {sp.n} paired seeds, Holm-adjusted p = {fmt_p(sp.p_holm)}.")


def take_sentence(a: Analysis) -> str:
    pw, gap = a.power, a.gap
    images = f"{gap.images_per_arm_for_80:,}" if gap.images_per_arm_for_80 else "more than 10,000,000"
    tail = (f" Seeds average out training randomness on this fixed test set; they cannot narrow its test-sampling "
            f"interval, for which about {images} test images per arm are needed to tell two runs "
            f"{100 * gap.gap:.2f} pp apart with {gap.target_power:.0%} power.")
    head = f"To detect the paper's {100 * PAPER_DIFFERENCE:+.2f} pp gap"
    if pw is None:
        return head + ": needs paired confirmation runs first." + tail
    if not math.isfinite(pw.power_at_n):
        return f"{head}: {pw.note}" + tail
    need = (f"about {pw.seeds_for_target:,} paired seeds" if pw.seeds_for_target is not None
            else pw.note.rstrip("."))
    lo, hi = f"{pw.power_primary_only:.0%}", f"{pw.power_every_alpha:.0%}"
    have = (f"{lo} (gap at the primary α only) to {hi} (gap at every α, Holm over {pw.n_alphas} α)"
            if pw.n_alphas > 1 and lo != hi else f"{pw.power_at_n:.0%}")
    return (f"{head} with {pw.target_power:.0%} power, this decision needs {need} at the observed paired sd "
            f"({100 * pw.sd_differences[0]:.2f} pp); it has {pw.n_seeds}, power {have}." + tail)


def format_first_screen(fs: FirstScreen) -> str:
    parts = [fs.title, "=" * len(fs.title), "", *[line for f in fs.failures for line in (f, "")], fs.plain, "",
             text_table(fs.headers, fs.rows), fs.table_note, fs.data, "", f"Verdict: {fs.verdict}"]
    if fs.stages:
        parts += ["", fs.stages]
    checks = " ".join(x for x in (fs.cross_check, fs.sensitivity) if x)
    if checks:
        parts += ["", checks]
    parts += ["", fs.take, "", "Records:"] + [f"  {r}" for r in fs.records]
    return "\n".join(parts)


def summary_text(run_dir: str | Path, *, seed: int = 0, n_resamples: int = 9999, power_reps: int = 4000) -> str:
    # The report's first screen as plain text (no figures, ASO or error-rate simulation: seconds, not minutes).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        a = analyse(load_study(run_dir), seed=seed, n_resamples=n_resamples, aso_iterations=0, power_reps=power_reps,
                    error_rate_reps=0)
    return format_first_screen(first_screen(a))
