# The report from a (fabricated) smoke study: every figure and the verdict are there, the HTML is
# self-contained and renders in headless Chromium with every image loaded, and missing optional
# inputs become notes instead of crashes.
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis import write_report  # noqa: E402
from analysis.report import FIGURES  # noqa: E402
from analysis.verdict import CAVEAT, GAIN_BETTER, GAIN_WORSE, NO_DIFFERENCE  # noqa: E402

FAST = dict(aso_iterations=30, n_resamples=1000)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = make_fake_study(tmp_path_factory.mktemp("runs"), "smoke", n_test=120)
    return write_report(run, **FAST)


@pytest.mark.slow
def test_report_has_every_figure_and_the_verdict(report):
    out = report.parent
    assert report == out / "index.html" and out.name == "report", "default output is <run_dir>/report/index.html"
    page = report.read_text()
    md = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 5000, f"{name}.png missing or empty"
        assert f'id="fig-{name}"' in page, f"figure {name} not embedded in index.html"
        assert f"]({name}.png)" in md, f"figure {name} not referenced in report.md"
    assert sorted(results["figures"]) == sorted(FIGURES)
    label = results["verdict"]["label"]
    assert label in (GAIN_BETTER, NO_DIFFERENCE, GAIN_WORSE)
    for text in (page, md):
        assert f"Verdict: {label}" in text
        assert "Holm" in text and "paired seeds" in text and "Newcombe" in text and "McNemar" in text
        assert "best mean validation accuracy among GAIN alphas in confirmation" in text, "the primary rule must be stated"
    assert CAVEAT.split(":")[0] in md, "the verdict's caveat (fixed test set) must be stated"
    assert results["paper_gap"]["significant"] is False


@pytest.mark.slow
def test_html_is_self_contained(report):
    page = report.read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(srcs) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in srcs), "every image must be embedded"
    assert not re.search(r'(src|href)="(https?:|//)', page), "the page must not load anything from the network"


@pytest.mark.slow
def test_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not installed: run `make browser` (Debian package `chromium`)")
    r = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, f"chromium failed: {r.stderr[-2000:]}"
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert body, "no <body> in the rendered DOM"
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    assert total and loaded, f"the page's load script did not run: {body.group(0)[:200]}"
    assert int(total.group(1)) == len(FIGURES) and int(loaded.group(1)) == len(FIGURES), (
        f"{loaded.group(1)} of {total.group(1)} images loaded in Chromium"
    )


@pytest.mark.slow
def test_missing_optional_inputs_give_notes(tmp_path):
    run = make_fake_study(tmp_path, "bare", n_test=40, with_optuna=False, with_attention=False, with_groups=False, search_trials=2)
    (run / "epochs.parquet").unlink()
    page = write_report(run, tmp_path / "out", **FAST).read_text()
    for note in ("optuna.db not found", "attention overlays left out", "no group accuracies", "learning curves left out"):
        assert note in page, f"expected a note: {note!r}"
    assert 'id="fig-accuracy_by_arm"' in page and 'id="fig-power_curve"' in page


@pytest.mark.slow
def test_empty_tables_give_notes(tmp_path):
    # The study writes zero-row tables (float64 columns) when no confirmation run returned predictions.
    import numpy as np
    import pandas as pd

    run = make_fake_study(tmp_path, "empty", n_test=40, with_optuna=False, search_trials=2)
    for name in ("predictions", "attention"):
        cols = pd.read_parquet(run / f"{name}.parquet").columns
        pd.DataFrame({c: pd.Series(dtype="float64") for c in cols}).to_parquet(run / f"{name}.parquet")
    np.savez(run / "examples.npz", image_ids=np.array([], dtype=str), images=np.zeros((0, 1, 1, 3), np.uint8),
             masks=np.zeros((0, 1, 1), np.uint8))
    page = write_report(run, **FAST).read_text()
    assert "no seed has predictions for both baseline" in page
    assert "no seed has attention maps for both baseline" in page


@pytest.mark.slow
def test_no_confirm_rows_says_so(tmp_path):
    import pandas as pd

    run = make_fake_study(tmp_path, "early", n_test=40, search_trials=3)
    trials = pd.read_parquet(run / "trials.parquet")
    trials[trials.phase == "search"].to_parquet(run / "trials.parquet")
    page = write_report(run, **FAST).read_text()
    assert "nothing to compare yet" in page and "no completed confirmation runs" in page
    assert 'id="fig-optuna_history_gain"' in page, "the search is still reported"


def test_cli_errors_name_the_problem(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr
