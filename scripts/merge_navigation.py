"""One navigate-to table from study runs kept in several folders (seeds run in parallel processes).

.venv/bin/python scripts/merge_navigation.py --output runs/nav_final runs/nav_final_a runs/nav_final_b
"""
import argparse
import json
from pathlib import Path

from dualdiff_ros.evaluation.experiments import summarize
from dualdiff_ros.evaluation.navigation import METRICS, TABLE_COLUMNS
from dualdiff_ros.evaluation.report import markdown_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders with results.json of `dualdiff navigate`")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    results = [json.loads((run / "results.json").read_text()) for run in args.runs]
    rows = [row for r in results for row in r["rows"]]
    summary = summarize(rows, keys=METRICS + ("answered", "proposals_returned"))
    args.output.mkdir(parents=True, exist_ok=True)
    merged = {"runs": [str(r) for r in args.runs], "rows": rows, "summary": summary,
              "train_seconds": {k: v for r in results for k, v in r["train_seconds"].items()}}
    (args.output / "results.json").write_text(json.dumps(merged, indent=1, default=str))
    seeds = sorted({row["seed"] for row in rows})
    table = markdown_table(summary, TABLE_COLUMNS + ["answered"])
    (args.output / "results.md").write_text(f"# navigate_to, seeds {seeds}\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
