"""A failed run is not a footnote: the first screen (summary.txt, the report's page, the launcher's
terminal) names every run that failed after its retries above the verdict, and the verdict says
whether the missing runs could have changed it."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis.failures import could_change_sentence, failed_runs, verdict_label  # noqa: E402
from analysis.report import summary_text  # noqa: E402
from analysis.verdict import GAIN_BETTER, NO_DIFFERENCE  # noqa: E402

ERROR = "ValueError: Could not recover from checkpoint as it does not exist on storage anymore."


def fail(run: Path, trial_id: str, phase_dir: str = "confirm") -> Path:
    """Marks a run of the fabricated study as failed, as the study records it, with Tune's error.txt."""
    t = pd.read_parquet(run / "trials.parquet")
    row = t.trial_id == trial_id
    assert row.sum() == 1, f"no run {trial_id} in the fake study"
    t.loc[row, "status"] = "error"
    for c in ("test_acc", "val_acc"):
        t.loc[row, c] = np.nan
    t.to_parquet(run / "trials.parquet", index=False)
    folder = run / phase_dir / trial_id
    folder.mkdir(parents=True)
    (folder / "error.txt").write_text(f"Failure # 1\nTraceback (most recent call last):\n  File ...\n{ERROR}\n")
    return folder / "error.txt"


def test_failed_run_is_named_above_the_verdict(tmp_path):
    run = make_fake_study(tmp_path, "f", seeds=tuple(range(6)), alphas=(1.0,), n_test=40, with_optuna=False,
                          with_attention=False)
    error_file = fail(run, "confirm-baseline-nan-3")
    text = summary_text(run, n_resamples=200, power_reps=200)
    first = text[:text.index("Verdict: ")]  # the first mention of the verdict on the screen
    assert "FAILED RUN" in first, f"the failed run must be named above the verdict:\n{text}"
    line = next(ln for ln in first.splitlines() if ln.startswith("FAILED RUN"))
    for what in ("confirm-baseline-nan-3", "baseline", "seed 3", ERROR, str(error_file.resolve())):
        assert what in line, f"the failed run's line lacks {what!r}: {line}"
    verdict = next(p for p in text.split("\n\n") if p.startswith("Verdict: ") and "Holm" in p)  # the verdict's own line
    assert "1 run failed" in verdict and ("could change it" in verdict or "cannot change it" in verdict), \
        f"the verdict must say whether the missing run could change it:\n{verdict}"


@pytest.mark.parametrize("effect, expect_change", [(0.0, False), (0.03, True)])
def test_could_change_is_judged_at_the_extremes(tmp_path, effect, expect_change):
    # No effect: one more paired difference of -1 or +1 among 12 does not make it significant. A clear
    # effect over 5 seeds: one GAIN run at 0 accuracy (baseline 1) removes it.
    seeds = tuple(range(12)) if effect == 0 else tuple(range(5))
    run = make_fake_study(tmp_path, "c", seeds=seeds, alphas=(1.0,), gain_effect=effect, n_test=400,
                          with_optuna=False, with_attention=False)
    complete = pd.read_parquet(run / "trials.parquet")
    label = verdict_label(complete, {})
    assert label == (NO_DIFFERENCE if effect == 0 else GAIN_BETTER), f"the fake study's verdict is {label}"
    fail(run, "confirm-gain-1.0-2")
    trials = pd.read_parquet(run / "trials.parquet")
    sentence = could_change_sentence(trials, {}, verdict_label(trials, {}))
    assert ("could change it" in sentence) == expect_change, sentence
    assert ("cannot change it" in sentence) == (not expect_change), sentence


def test_failed_search_and_selection_runs(tmp_path):
    run = make_fake_study(tmp_path, "s", seeds=(0, 1, 2), alphas=(1.0,), n_test=40, with_optuna=False,
                          with_attention=False)
    fail(run, "search-baseline-1", "search")
    trials = pd.read_parquet(run / "trials.parquet")
    assert [f.phase for f in failed_runs(trials, run)] == ["search"], "the failed search run must be found"
    assert "could have been selected" in could_change_sentence(trials, {}, NO_DIFFERENCE), \
        "a failed search run's objective is unknown: it could have been selected"

    # A selection run of the configuration that was not selected: at 1 instead of 0 it could win...
    sel = trials.phase == "select"
    trials.loc[sel, "objective"] = 0.9
    trials.loc[sel, "candidate"] = np.where(trials.loc[sel, "trial_id"].str.contains("-0-"), "search-gain-0",
                                            "search-gain-1")
    trials.loc[trials.trial_id == "search-baseline-1", "status"] = "completed"
    meta = {"selected": {"gain": {"trial_id": "search-gain-0", "objective": 0.9}}}
    loser = trials.trial_id == "select-gain-1-500"
    trials.loc[loser, "status"] = "error"
    said = could_change_sentence(trials, meta, NO_DIFFERENCE)
    assert "could make gain's selected configuration another one" in said, \
        f"at 1, the failed run lifts its configuration's mean (0.95) above the winner's (0.9): {said}"
    # ... but not when the winner's mean is out of its reach: 1 and 0.5 average 0.75 < 0.9.
    trials.loc[trials.trial_id == "select-gain-1-501", "objective"] = 0.5
    said = could_change_sentence(trials, meta, NO_DIFFERENCE)
    assert "could not change which configuration was selected" in said, \
        f"at 1, the failed run lifts its configuration's mean only to 0.75, below the winner's 0.9: {said}"
