"""Where a finished study's phases lose slot time, from Tune's per-trial result.json files.

    python bench/phase_gaps.py runs/gainstudy

Per phase (slot-seconds, slots from study.json `timing`): before the first trial starts and after the
last one ends (Tune's start-up and teardown: new workers, imports), idle slots between them (mostly
the last trial running alone), the trials' own time, and how long the last trial ran alone. A trial starts at its first report
minus that report's duration.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def spans(phase_dir: Path) -> list[tuple[float, float]]:
    """(start, end) Unix times of each trial of one Tune experiment."""
    out = []
    for f in sorted(phase_dir.glob("*/result.json")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out.append((rows[0]["timestamp"] - rows[0].get("time_this_iter_s", 0.0), rows[-1]["timestamp"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path)
    args = p.parse_args()
    timing = json.loads((args.run_dir / "study.json").read_text())["timing"]["phases"]
    print(f"{'phase':<16}{'wall s':>8}{'start+end':>11}{'idle inside':>13}{'trials':>8}   (slot-seconds)"
          f"{'last trial alone, s':>22}")
    for phase, t in timing.items():
        s = spans(args.run_dir / phase)
        if not s:
            continue
        first, last = min(a for a, _ in s), max(b for _, b in s)
        busy = sum(b - a for a, b in s)
        ends = sorted(b for _, b in s)
        slots = t["slots"]
        drain = ends[-1] - ends[-2] if len(ends) > 1 else 0.0
        print(f"{phase:<16}{t['wall_s']:>8.1f}{slots * (t['wall_s'] - (last - first)):>11.1f}"
              f"{slots * (last - first) - busy:>13.1f}{busy:>8.1f}{'':17}{drain:>22.1f}")


if __name__ == "__main__":
    main()
