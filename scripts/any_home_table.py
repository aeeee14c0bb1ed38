"""Tables of `scripts/any_home_study.sh`'s learning curves: mean ± sd over homes and seeds, per group.

.venv/bin/python scripts/any_home_table.py runs/any_home [--observations 1 2 4 8 16 32 64 128]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from dualdiff_ros.evaluation.learning_curve import served_at_margin

ROWS = ("general", "fine_tuned", "proposer", "home_aware_summary", "home_aware", "home_aware_w1.5",
        "home_aware_places", "home_aware_places_w1.5", "served", "limit", "labelled_parts", "oracle")
METRICS = ("accuracy", "coverage_vs_oracle", "looks_to_find")


def load(folder: Path):
    """(domain, family) -> list of rows (every home of every seed)."""
    out = defaultdict(list)
    for path in sorted(folder.glob("*/results.json")):
        result = json.loads(path.read_text())
        # home names repeat across seeds: a row is known by its run and its home
        out[(result["domain"], result.get("family", "box"))].extend({**r, "run": path.parent.name}
                                                                    for r in result["rows"])
    return out


def table(rows, observations) -> str:
    lines = ["| N | " + " | ".join(r for r in ROWS) + " |", "|---|" + "---|" * len(ROWS)]
    for n in observations:
        cells = []
        for name in ROWS:
            got = [r for r in rows if r["observations"] == n and r["row"] == name]
            if not got:
                cells.append("")
                continue
            means = [np.mean([r[m] for r in got]) for m in METRICS]
            cells.append(" / ".join(f"{v:.2f}" for v in means))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ways(rows, observations) -> str:
    counts = {n: defaultdict(int) for n in observations}
    for r in rows:
        if r["row"] == "served" and r["observations"] in counts:
            counts[r["observations"]][r.get("answered_by", "?")] += 1
    return "; ".join(f"N={n}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for n, c in counts.items())


BEST_SINGLE = ("fine_tuned", "proposer")  # the single ways the looks target names (specialist, composed)


def looks_gaps(rows, observations, allowed: float = 0.1) -> str:
    """Per N >= 4: homes whose served looks-to-find exceed the best single way's by more than `allowed`."""
    by_home = defaultdict(dict)
    for r in rows:
        by_home[(r["run"], r["home"], r["observations"])][r["row"]] = r["looks_to_find"]
    out = []
    for n in (n for n in observations if n >= 4):
        gaps = [looks["served"] - min(looks[w] for w in BEST_SINGLE if w in looks)
                for (_, _, m), looks in by_home.items()
                if m == n and "served" in looks and any(w in looks for w in BEST_SINGLE)]
        if gaps:
            out.append(f"N={n}: {sum(g > allowed for g in gaps)}/{len(gaps)} (worst {max(gaps):+.2f})")
    return "; ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--observations", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--margin", type=float, default=None,
                   help="replay the served row's check at this check.margin (default: as the run served)")
    args = p.parse_args()
    for (domain, family), rows in sorted(load(Path(args.folder)).items()):
        rows = rows if args.margin is None else served_at_margin(rows, args.margin)
        homes = len({(r["run"], r["home"]) for r in rows})
        first = rows[0]["observations"] if rows else 0
        pairs = len([r for r in rows if r["row"] == "general" and r["observations"] == first])
        print(f"\n### {domain}, {family} homes ({pairs} home-seed pairs; accuracy / coverage vs oracle / looks)\n")
        print(table(rows, args.observations))
        print(f"\nserved from: {ways(rows, args.observations)}  ({homes} home names)")
        print(f"\nhomes whose served looks exceed the best of fine-tuned / composed by > 0.1: "
              f"{looks_gaps(rows, args.observations)}")


if __name__ == "__main__":
    main()
