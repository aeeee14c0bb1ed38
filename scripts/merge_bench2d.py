"""Merge `dualdiff bench-2d` runs kept in several output folders into one table and one sample grid.

Long CPU runs are split over folders (one per job); this writes OUT/results.md (mean ± sd over
seeds) and OUT/samples_grid.png (first seed of every dataset × configuration) from all of them.

    .venv/bin/python scripts/merge_bench2d.py docs/img/bench2d_start runs/bench2d_others30k runs/bench2d_matched_A \
        --configs baseline_wide ours_wide_matched_start
"""
import argparse
import json
from pathlib import Path

from dualdiff_ros.domains.toy2d import DEFAULT_SEED, TOY_DATASETS, toy_dataset
from dualdiff_ros.evaluation.bench2d import bench_configs, markdown_table, plot_samples, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("folders", type=Path, nargs="+", help="bench-2d output folders (each with results.json)")
    parser.add_argument("--configs", nargs="+", default=None, help="configurations to keep (default: all)")
    args = parser.parse_args()
    runs = []
    for folder in args.folders:
        for run in json.loads((folder / "results.json").read_text())["runs"]:
            if args.configs is None or run["config"] in args.configs:
                run["samples_file"] = str((folder / run["samples_file"]).resolve())  # absolute: any folder
                runs.append(run)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.md").write_text(markdown_table(summarize(runs), bench_configs()))
    datasets = [d for d in TOY_DATASETS if any(r["dataset"] == d for r in runs)]
    configs = [c for c in bench_configs() if any(r["config"] == c for r in runs)]
    real = {d: toy_dataset(d, 10_000, DEFAULT_SEED) for d in datasets}
    plot_samples(args.output, runs, datasets, configs, real)
    print(f"wrote {args.output / 'results.md'} and {args.output / 'samples_grid.png'}")


if __name__ == "__main__":
    main()
