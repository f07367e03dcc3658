"""The four-way verdict's error rates and power, simulated on bimodal seed data (minutes).

    python -m bench.sequential                     # margin 1 pp, 1 and 2 alphas, 20,000 studies per cell
    python -m bench.sequential --reps 4000 --alphas 1

Every cell runs whole simulated studies through the verdict's rule (analysis.simulation: paired t-test and
TOST, Holm across the alphas with the primary alpha picked on validation accuracy, each look's nominal
level): fixed designs of 10, 20 and 40 paired seeds, and the staged design of 10 seeds plus blocks of 5 up
to 40 with Lan-DeMets O'Brien-Fleming spending; seed data with a normal body (paired sd 1 pp) and with 10 %
of runs collapsing to chance in every arm. Then the same staged design with Pocock spending, for the choice
of boundary. The tables in docs/results.md ("Error rates and power of the four-way verdict") come from this script.
"""
from __future__ import annotations

import argparse
import math
import time

from analysis.sequential import Design, schedule
from analysis.simulation import SeedModel, operating, proof_tables

TITLES = {
    "false_difference": "false 'better' or 'worse' (A/A: no true difference); must be <= 5 %",
    "false_equivalence": "false 'equivalent' (true mean difference exactly at the margin); must be <= 5 %",
    "equivalence_power": "'equivalent' at a true difference of 0, paired sd 1 pp (power)",
}


def _table(rows, with_seeds: bool) -> str:
    head = ["", *rows[0].designs]
    body = [[r.what, *(f"{100 * v:.1f} %" for v in r.values)] for r in rows]
    if with_seeds:
        body += [[f"  mean seeds used, {r.what}", *(f"{s:.1f}" for s in r.extra)] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin, percentage points (default 1)")
    p.add_argument("--reps", type=int, default=20000, help="simulated studies per cell (default 20,000)")
    p.add_argument("--alphas", type=int, nargs="+", default=[1, 2], help="family sizes (default 1 2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    m = args.margin / 100
    print(f"seed model: {SeedModel(sd=0.01).describe()}; collapse rows: 10 % of runs per arm collapse")
    print(f"{args.reps:,} simulated studies per cell: Monte-Carlo sd of a 5 % rate "
          f"{100 * math.sqrt(0.05 * 0.95 / args.reps):.2f} points")
    for k in args.alphas:
        t0 = time.perf_counter()
        tables = proof_tables(m, n_alphas=k, reps=args.reps, seed=args.seed)
        print(f"\n## {k} GAIN alpha(s), margin ±{args.margin:g} pp ({time.perf_counter() - t0:.0f} s)")
        for key, rows in tables.items():
            print(f"\n{TITLES[key]}\n")
            print(_table(rows, with_seeds=key == "equivalence_power"))
    print("\n## the boundary: O'Brien-Fleming vs Pocock spending, staged 10..40, one alpha, normal seeds\n")
    looks = schedule(10, 40)
    rows = [["spending", "A/A false better/worse", "false equivalent at +margin", "power of equivalent at 0",
             "mean seeds at 0", "power of 'better' at +1 pp", "mean seeds at +1 pp"]]
    for kind in ("obf", "pocock"):
        d = Design(m, looks, kind)
        aa = operating(SeedModel(0.0), d, 1, args.reps, args.seed)
        edge = operating(SeedModel(m), d, 1, args.reps, args.seed)
        gap = operating(SeedModel(0.01, sd=0.02), d, 1, args.reps, args.seed)
        rows.append([kind, f"{100 * aa.different:.1f} %", f"{100 * edge.claimed_equivalent:.1f} %",
                     f"{100 * aa.claimed_equivalent:.1f} %", f"{aa.mean_seeds:.1f}", f"{100 * gap.better:.1f} %",
                     f"{gap.mean_seeds:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("('better' at +1 pp: paired sd 2 pp, so that neither design decides it at the first look)")


if __name__ == "__main__":
    main()
