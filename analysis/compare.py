# Studies side by side: python -m analysis.compare runs/gainstudy runs/transfer [--out FILE.md]
# One column per study (its regime: preset and network), one row per quantity a reader compares
# across regimes: each arm's test accuracy, collapsed and warm-up runs, attention energy and IoU next
# to what content-free maps score, and the verdict with its interval. Every number is read from the
# studies' report/results.json (written by python -m analysis.report) and study.json: nothing is
# recomputed here, so the table says exactly what each report says.
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analysis.tables import BASELINE, GAIN, arm_label, model_line, model_name

ATTENTION = (("energy_pointing_game", "energy"), ("iou", "IoU"))


def load(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    results, study = run / "report" / "results.json", run / "study.json"
    if not study.is_file():
        raise FileNotFoundError(f"{run}: no study.json; pass a study folder, runs/<name>")
    if not results.is_file():
        raise FileNotFoundError(f"{run}: no report/results.json; write it first: python -m analysis.report {run}")
    return {"study": json.loads(study.read_text()), "results": json.loads(results.read_text())}


def _pp(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f} pp"


def _g(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _arms(r: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(s["label"] for s in r["summaries"]))


def _summary(r: dict[str, Any], label: str, metric: str) -> dict[str, Any] | None:
    return next((s for s in r["summaries"] if s["label"] == label and s["metric"] == metric), None)


def _accuracy(r: dict[str, Any], label: str) -> str:
    s = _summary(r, label, "test_acc")
    return "n/a" if s is None else f"{s['mean']:.4f} ± {s['sd']:.4f} ({s['n']} seeds)"


def _runs(r: dict[str, Any], label: str) -> str:
    o = next((o for o in r["outcomes"] if o["label"] == label), None)
    if o is None:
        return "n/a"
    parts = [f"{len(o['collapsed_seeds'])} collapsed", f"{len(o['diverged_seeds'])} diverged"]
    if o["arm"] == GAIN:
        parts.append(f"{len(o['warmup_seeds'])} on a warm-up epoch")
    return f"{', '.join(parts)} of {o['runs']}"


def _attention(r: dict[str, Any], label: str) -> str:
    values = [_summary(r, label, m) for m, _ in ATTENTION]
    return " / ".join("n/a" if v is None else f"{v['mean']:.3f}" for v in values)


def _verdict(r: dict[str, Any]) -> str:
    v = r["verdict"]
    ci = v.get("difference_ci") or {}
    lean = f", leaning {v['lean']}" if v.get("lean") and v["label"] == "inconclusive" else ""
    return (f"{v['label']}{lean}: mean {_pp(v.get('mean_difference'))} "
            f"[{_pp(ci.get('low'))}, {_pp(ci.get('high'))}] at α={_g(v.get('alpha'), '.3g')} over {v.get('n_seeds')} "
            f"seeds, Holm p {_g(v.get('p_holm'), '.2g')}")


def _label(s: dict[str, Any], role: str | None) -> str | None:
    """The arm label with this role in the study: the baseline, or the GAIN α the study.json names
    for "tuned" / "paper" (None when the study did not confirm it)."""
    if role is None:
        return BASELINE
    alpha = (s["study"].get("alpha_roles") or {}).get(role)
    label = arm_label(GAIN, alpha) if alpha is not None else None
    return label if label in _arms(s["results"]) else None


def rows(studies: list[dict[str, Any]]) -> list[list[str]]:
    """[quantity, study 1, study 2, ...] per row; arms are matched by role (baseline, tuned α, the paper's α)."""
    def run_config(s: dict[str, Any]) -> dict[str, Any]:
        return s["study"]["config"].get("run_config") or {}

    out = [["study", *(f"{s['study']['name']} (`--preset {s['study']['config'].get('preset')}`)" for s in studies)],
           ["model", *(model_line(run_config(s)) for s in studies)],
           ["commit", *(str(s["study"].get("git_commit", "n/a"))[:7] for s in studies)]]
    for role, key in (("baseline", None), ("GAIN, tuned α", "tuned"), ("GAIN, the paper's α", "paper")):
        labels = [_label(s, key) for s in studies]
        named = [f"{lab}: " if lab and key else "" for lab in labels]
        out.append([f"{role}: test accuracy", *(n + _accuracy(s["results"], lab) if lab else "n/a"
                                                 for n, s, lab in zip(named, studies, labels))])
        out.append([f"{role}: runs", *(_runs(s["results"], lab) if lab else "n/a" for s, lab in zip(studies, labels))])
        out.append([f"{role}: attention energy / IoU",
                    *(_attention(s["results"], lab) if lab else "n/a" for s, lab in zip(studies, labels))])
    out.append(["content-free maps, energy / IoU: uniform; centred Gaussian",
                *("; ".join(" / ".join(f"{s['results']['content_free'][ref][m]:.3f}" for m, _ in ATTENTION)
                            for ref in ("uniform", "gaussian")) for s in studies)])
    out.append(["verdict (GAIN − baseline, test accuracy, 95% interval)", *(_verdict(s["results"]) for s in studies)])
    return out


def markdown(studies: list[dict[str, Any]]) -> str:
    table = rows(studies)
    title = " vs ".join(model_name(s["study"]["config"].get("run_config") or {}) for s in studies)
    lines = [f"# Does GAIN help? {title}", "", "| " + " | ".join(table[0]) + " |",
             "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.compare",
                                 description="Studies side by side (e.g. the default and the transfer regime), "
                                             "from their reports' results.json.")
    ap.add_argument("run_dirs", nargs="+", help="study folders, runs/<name>, each with its report written")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    try:
        text = markdown([load(d) for d in args.run_dirs])
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
