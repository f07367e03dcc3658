# Loading a study directory, pairing by seed, and the errors that name the bad value and the fix.
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis import load_study, paired_metric, primary_alpha  # noqa: E402
from analysis.tables import confirm_runs, gain_alphas  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_fake_study(tmp_path_factory.mktemp("runs"), "tables", n_test=40, with_optuna=True, search_trials=3)


def test_load_reads_every_table(run):
    st = load_study(run)
    assert st.name == "tables" and st.config["seeds"] == [0, 1, 2, 3, 4]
    for name in ("epochs", "predictions", "attention", "examples"):
        assert getattr(st, name) is not None, f"{name} should be loaded"
    assert st.optuna_storage.startswith("sqlite:///") and st.optuna_storage.endswith("optuna.db")
    assert not st.notes, f"nothing is missing, yet notes say: {st.notes}"


def test_missing_run_dir_and_trials_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_study(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="trials.parquet.*run the study first"):
        load_study(tmp_path / "empty")


def test_a_development_version_is_refused_by_name(tmp_path):
    import json

    run = make_fake_study(tmp_path, "old", n_test=40, with_optuna=False, search_trials=2)
    trials = pd.read_parquet(run / "trials.parquet")
    trials.drop(columns=["selected_warmup", "iou_uniform"]).to_parquet(run / "trials.parquet")
    with pytest.raises(ValueError, match=r"lacks columns \['selected_warmup', 'iou_uniform'\].*run the study again"):
        load_study(run)
    trials.to_parquet(run / "trials.parquet")
    meta = json.loads((run / "study.json").read_text())
    del meta["config"]["margin_pp"]
    (run / "study.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"declares no equivalence margin \(config.margin_pp\).*run the study again"):
        load_study(run)


def test_missing_optional_inputs_become_notes(tmp_path):
    run = make_fake_study(tmp_path, "bare", n_test=20, with_optuna=False, with_attention=False, search_trials=2)
    (run / "epochs.parquet").unlink()
    st = load_study(run)
    assert st.epochs is None and st.attention is None and st.examples is None and st.optuna_storage is None
    text = " ".join(st.notes)
    for what in ("epochs.parquet", "attention.parquet", "examples.npz", "optuna.db"):
        assert what in text, f"no note about missing {what}"


def test_relative_recorded_storage_is_not_created(tmp_path, monkeypatch):
    # The contract's sqlite:///runs/<name>/optuna.db is relative to the launcher's cwd; from another
    # cwd the report must use the study's own file, not create an empty database.
    run = make_fake_study(tmp_path, "rel", n_test=20, search_trials=2)
    import json

    meta = json.loads((run / "study.json").read_text())
    meta["optuna_storage"] = "sqlite:///runs/rel/optuna.db"
    (run / "study.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path / "rel")
    st = load_study(run)
    assert st.optuna_storage == f"sqlite:///{(run / 'optuna.db').resolve()}"
    assert not (tmp_path / "rel" / "runs").exists(), "no stray database may be created"


def test_pairing_by_seed_drops_unpaired_and_failed_runs(run):
    trials = pd.read_parquet(run / "trials.parquet")
    # seed 4 of GAIN α=1 diverged; seed 3 of baseline is missing altogether
    trials.loc[(trials.phase == "confirm") & (trials.arm == "gain") & (trials.alpha == 1.0) & (trials.seed == 4), "status"] = "diverged"
    trials = trials[~((trials.phase == "confirm") & (trials.arm == "baseline") & (trials.seed == 3))]
    pairs = paired_metric(trials, 1.0)
    assert pairs["seed"].tolist() == [0, 1, 2], "only seeds with a completed run in both arms pair"
    base = trials[(trials.phase == "confirm") & (trials.arm == "baseline")].set_index("seed")["test_acc"]
    assert pairs["baseline"].tolist() == base.loc[[0, 1, 2]].tolist()


def test_duplicate_runs_for_a_seed_are_an_error(run):
    trials = pd.read_parquet(run / "trials.parquet")
    dup = trials[(trials.phase == "confirm") & (trials.arm == "baseline") & (trials.seed == 0)]
    with pytest.raises(ValueError, match=r"seed\(s\) \[0\].*one run per"):
        paired_metric(pd.concat([trials, dup]), 1.0)


def test_primary_alpha_rule(run):
    trials = pd.read_parquet(run / "trials.parquet")
    conf = (trials.phase == "confirm") & (trials.arm == "gain")
    trials.loc[conf, "val_acc"] = 0.9
    trials.loc[conf & (trials.alpha == 2.0), "val_acc"] = 0.91
    trials.loc[conf & (trials.alpha == 2.0), "test_acc"] = 0.0  # the test set never chooses
    assert primary_alpha(trials) == 2.0
    trials.loc[conf, "val_acc"] = 0.9
    assert primary_alpha(trials) == 0.5, "ties go to the smallest alpha"
    assert gain_alphas(trials) == [0.5, 1.0, 2.0]
    assert primary_alpha(trials[~conf]) is None


def test_baseline_alpha_is_nan_and_labels(run):
    rows = confirm_runs(load_study(run).trials)
    assert rows.loc[rows.arm == "baseline", "alpha"].isna().all()
    assert set(rows["arm_label"]) == {"baseline", "GAIN α=0.5", "GAIN α=1", "GAIN α=2"}
    assert not np.isnan(rows.loc[rows.arm == "gain", "alpha"]).any()
