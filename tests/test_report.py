# The report from a (fabricated) smoke study: every figure and the verdict are there, the HTML is
# self-contained and renders in headless Chromium with every image loaded, and missing optional
# inputs become notes instead of crashes.
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the fake-study helper lives next to this file
from conftest_analysis import make_fake_study  # noqa: E402

from analysis import write_report  # noqa: E402
from analysis.report import FIGURES  # noqa: E402
from analysis.verdict import CAVEAT, LABELS  # noqa: E402

FAST = dict(aso_iterations=30, n_resamples=1000)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # A tuned alpha with 6 digits, the paper's alpha, a collapsed run and a diverged one.
    run = make_fake_study(tmp_path_factory.mktemp("runs"), "smoke", n_test=120, alphas=(0.297794, 1.0, 2.0),
                          collapse={("gain", 1.0): (2,)}, diverge={("gain", 2.0): (4,)})
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
    assert label in LABELS, f"{label!r} is not one of the four answers"
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
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--window-size=1280,1100"]
    r = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"chromium failed: {r.stderr[-2000:]}"
    body = re.search(r"<body([^>]*)>", r.stdout)
    assert body, "no <body> in the rendered DOM"
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    assert total and loaded, f"the page's load script did not run: {body.group(0)[:200]}"
    assert int(total.group(1)) == len(FIGURES) and int(loaded.group(1)) == len(FIGURES), (
        f"{loaded.group(1)} of {total.group(1)} images loaded in Chromium"
    )
    # The first-screen summary fits in the first 1280x1100 screen, and the screenshot shows it.
    bottom = re.search(r'data-summary-bottom="(\d+)"', body.group(1))
    height = re.search(r'data-viewport-height="(\d+)"', body.group(1))
    assert bottom and height, f"no summary position in the rendered DOM: {body.group(0)[:300]}"
    assert int(bottom.group(1)) <= int(height.group(1)), (
        f"the summary ends at {bottom.group(1)} px, below the first screen ({height.group(1)} px)")
    shot = report.parent / "first_screen.png"
    r = subprocess.run(flags + [f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 20000, f"no screenshot: {r.stderr[-1000:]}"
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    assert img.shape[:2] == (1100, 1280)
    # The summary box (light background, grey border) spans the page's column: many non-white rows.
    rows_with_ink = np.mean(img.min(axis=(1, 2)) < 0.5)
    assert rows_with_ink > 0.3, f"the first screen is mostly blank ({rows_with_ink:.0%} of rows have text)"


@pytest.mark.slow
def test_report_is_deterministic(report, tmp_path):
    # Fixed seeds everywhere; the overlays drawn here, then in a second process: the same report, byte for byte.
    again = write_report(report.parent.parent, tmp_path / "again", **FAST, parallel=True).parent
    written = sorted(p.name for p in again.iterdir())  # other tests add files to the fixture's folder
    assert "attention_overlays.png" in written, "the worker's figure must be part of the report"
    for f in written:
        assert (again / f).read_bytes() == (report.parent / f).read_bytes(), f"{f} differs between two runs of the report"


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


@pytest.mark.slow
def test_first_screen_in_plain_words(report):
    page = report.read_text()
    first = page[page.index('<section id="summary"'):page.index("</section>")]
    after = page[page.index("</section>"):]
    plain = first[first.index("Verdict:"):]
    assert plain.index("Hodges-Lehmann") < plain.index("mean "), \
        "the plain-words line leads with the verdict, then the robust estimate, then the mean"
    assert "warm-up" in first, "GAIN runs that selected a warm-up epoch are counted on the first screen"
    for arm in ("baseline", "GAIN α=0.298 (tuned)", "GAIN α=1 (paper&#x27;s α)", "GAIN α=2"):
        assert f"<td>{arm}</td>" in first, f"first screen lacks the row of {arm}"
    for what in ("mean", "sd", "95% interval", "collapsed", "diverged", "0.9762", "0.9788"):
        assert what in first, f"first screen lacks {what!r}"
    assert "GAIN α=1 1 of 5 (seed 2)" in first and "GAIN α=2 1 diverged (seed 4)" in first, "collapsed/diverged runs named"
    assert "To detect the paper&#x27;s +0.26 pp gap" in first and "paired seeds" in first and "test images per arm" in first
    assert "0.297794" not in page, "alphas to 3 significant digits"
    assert "Data: " in first and "the paper used 839/226/378 images per class" in first and "fingerprint" in first, \
        "the data's provenance next to the paper's split sizes"
    assert "Sensitivity analysis (declared; not the verdict)" in first
    # Issue 16: the four-way answer in plain words, the margin, both intervals, the band figure, the cross-check.
    answer = plain[:plain.index(". Over ")]
    assert any(w in answer for w in ("GAIN is better", "GAIN is worse", "are equivalent", "Not decided")), answer
    assert "±1 pp" in plain and "declared before the first trial" in plain, "the margin is on the first screen"
    assert "90% t interval [" in plain and ", 95% [" in plain, "the 90% and 95% intervals are on the first screen"
    assert 'id="fig-paired_difference"' in first, "the paired-difference figure with the margin band is on the first screen"
    assert "Cross-check, not the verdict: baycomp" in first and "P(equivalent) = " in first
    assert after.index("Records:") < after.index("<h2>"), "the records follow the summary"
    assert page.index('<section id="summary"') < page.index("<h2>"), "the summary comes before every section"


@pytest.mark.slow
def test_summary_text_is_the_first_screen(report):
    from analysis.report import summary_text

    text = summary_text(report.parent.parent, n_resamples=1000)
    assert text.strip() == (report.parent / "summary.txt").read_text().strip(), "terminal summary == the report's first screen"
    assert text.startswith("Does GAIN help VGG16? Study 'smoke'") and "Verdict: " in text and "0.9762" in text


@pytest.mark.slow
def test_per_seed_table_selected_hyperparameters_and_records(report):
    page = report.read_text()
    assert "<th>seed</th><th>baseline</th><th>GAIN α=0.298</th><th>GAIN α=1</th><th>GAIN α=2</th>" in page
    assert "GAIN α=1 collapsed" in page and "GAIN α=2 diverged" in page and "<td>diverged</td>" in page
    assert "<td>search-gain-0</td>" in page and "select-gain-0-500" in page and "lr=0.000123" in page
    assert "search trials per arm</td><td>baseline 6, gain 6" in page, "per-arm search budget, not the total"
    assert "<td>model</td><td>VGG16 (1/16 width), from scratch, nothing frozen, Grad-CAM on block 4</td>" in page, \
        "the Study table names the regime: network, weights, what is frozen, the Grad-CAM block"
    assert "re-run on 2 selection seed(s) (500, 501)" in page
    cmd = re.search(r"browse them with: (\S+) (sqlite:///\S+) --host 127.0.0.1", page)
    assert cmd, "no optuna-dashboard command"
    exe, url = cmd.group(1), cmd.group(2)
    assert Path(url.removeprefix("sqlite:///")).is_file(), f"{url} does not point at the study's optuna.db"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{exe} does not run as printed: {r.stderr[-500:]}"
    assert "trials.parquet" in page and "study.json" in page and "Ray Tune experiments" in page
    assert "Fisher" in page and "Sensitivity analysis without collapsed pairs" in page


@pytest.mark.slow
def test_one_alpha_leaves_out_the_dose_response(tmp_path):
    run = make_fake_study(tmp_path, "one", n_test=40, alphas=(1.0,), with_optuna=False, search_trials=2)
    out = write_report(run, **FAST).parent
    assert not (out / "dose_response.png").exists() and "needs at least two" in (out / "index.html").read_text()


@pytest.mark.slow
def test_a_study_stopped_before_its_selection_says_so(tmp_path):
    run = make_fake_study(tmp_path, "stopped", n_test=40, alphas=(1.0, 2.0), with_optuna=False, search_trials=2)
    meta = json.loads((run / "study.json").read_text())
    del meta["selected"]
    (run / "study.json").write_text(json.dumps(meta))
    page = write_report(run, **FAST).read_text()
    section = page[page.index("<h2>Selected hyperparameters</h2>"):page.index("<h2>Study</h2>")]
    assert "records no selected configurations: the study stopped before its selection finished" in section, section
    assert "<table>" not in section, "no configurations are made up for a study that selected none"


def test_cli_refuses_tables_of_a_development_version(tmp_path):
    # Tables without the columns this version writes (here the collapse flag) are refused by name, exit 2.
    import pandas as pd

    run = make_fake_study(tmp_path, "old", n_test=40, alphas=(1.0,), with_optuna=False, with_attention=False,
                          search_trials=2)
    pd.read_parquet(run / "trials.parquet").drop(columns=["collapsed"]).to_parquet(run / "trials.parquet")
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(run)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr[-1000:]}"
    assert "lacks columns ['collapsed']" in r.stderr and "run the study again" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, f"one line, no traceback: {r.stderr}"


@pytest.mark.slow
def test_power_section_carries_the_four_way_error_rates(report):
    page = report.read_text()
    power = page[page.index("<h2>Power</h2>"):page.index("<h2>The paper")]
    for what in ("false &#x27;better&#x27; or &#x27;worse&#x27;", "false &#x27;equivalent&#x27;", "(power)",
                 "this study (5 seeds)", "fixed 10", "fixed 20", "fixed 40", "sequential 10..40",
                 "10% of runs collapse", "Mean paired seeds used"):
        assert what in power, f"the power section lacks {what!r}"
    rates = [float(x) for x in re.findall(r"<td>([0-9.]+)%</td>", power)]
    assert len(rates) >= 5 * 8 and all(0 <= r <= 100 for r in rates)
    assert "Equivalence on the paper&#x27;s numbers: Equivalence within ±1 pp is not shown" in page
    results = json.loads((report.parent / "results.json").read_text())
    assert results["verdict"]["margin"] == 0.01 and results["power"]["curve_equivalent"], \
        "results.json carries the margin and the equivalence power curve"


def test_a_staged_study_says_how_many_stages_ran_and_why_it_stopped(tmp_path):
    from analysis.report import summary_text

    stages = {"looks": [5, 10], "stopped": "seed budget spent at stage 2 (10 seeds, --max-seeds 10): inconclusive",
              "stages": [{"stage": 1, "seeds": 5, "label": "inconclusive"}, {"stage": 2, "seeds": 10, "label": "inconclusive"}]}
    run = make_fake_study(tmp_path, "staged", n_test=40, alphas=(1.0,), with_optuna=False, search_trials=2,
                          seeds=tuple(range(10)), max_seeds=10, stages=stages)
    text = summary_text(run, n_resamples=200, power_reps=200)
    assert "Staged confirmation: 2 of up to 2 stages ran (5, 10 seeds" in text, text
    assert "Stopped: seed budget spent at stage 2" in text
    assert "(look 2 of 2, 10 seeds)" in text, "the verdict is taken at the last look with that look's levels"


def test_the_title_and_the_model_line_name_the_regime():
    from analysis.tables import model_line, model_name
    from trainables.config import preset

    transfer = preset("transfer").to_flat()
    assert model_name(transfer) == "EfficientNet-Lite0" and model_name(preset("cpu").to_flat()) == "VGG16"
    assert model_line(transfer) == ("EfficientNet-Lite0, pretrained (imagenet), its first 8 blocks frozen, "
                                    "Grad-CAM on block 4"), model_line(transfer)
    assert model_line(preset("paper").to_flat()).startswith("VGG16, "), "the paper preset is full-width VGG16"


@pytest.mark.slow
def test_compare_puts_studies_side_by_side_with_each_reports_numbers(report, tmp_path, capsys):
    from analysis import compare

    run = report.parent.parent
    results = json.loads((report.parent / "results.json").read_text())
    out = tmp_path / "regimes.md"
    assert compare.main([str(run), str(run), "--out", str(out)]) == 0
    cells = [[c.strip() for c in r.strip().strip("|").split(" | ")] for r in out.read_text().splitlines() if r.startswith("| ")]
    table = {c[0]: c[1:] for c in cells}
    acc = {s["label"]: s for s in results["summaries"] if s["metric"] == "test_acc"}
    b = acc["baseline"]
    assert table["baseline: test accuracy"][0] == f"{b['mean']:.4f} ± {b['sd']:.4f} ({b['n']} seeds)"
    assert table["GAIN, tuned α: test accuracy"][0].startswith("GAIN α=0.298: "), "the tuned arm is found by its role"
    assert table["GAIN, the paper's α: runs"][0].startswith("1 collapsed"), "the collapsed α=1 run is counted"
    assert len(table["model"]) == 2 and table["model"][0] == table["model"][1], "one column per study"
    verdict = table["verdict (GAIN − baseline, test accuracy, 95% interval)"][0]
    assert verdict.startswith(results["verdict"]["label"]) and f"{100 * results['verdict']['mean_difference']:+.2f} pp" in verdict
    capsys.readouterr()
    assert compare.main([str(tmp_path)]) == 2, "a folder that is not a study is refused"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "study.json" in err, err
