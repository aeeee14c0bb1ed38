"""`dualdiff`: one command line for training, experiments, benchmarks and the demo.

    dualdiff train --domain cabinet --model-dir models [--recipe demo]   # = python -m dualdiff_ros.train
    dualdiff train --spec mug_counter.yaml --data fleet/ --model-dir models   # your own domain, from Parquet
    dualdiff data check --spec mug_counter.yaml --data fleet/   # rows kept / skipped, the first bad one named
    dualdiff data builtin --domain cabinet --output cabinet.parquet   # a thesis domain's data as fleet Parquet
    dualdiff data shards --spec mug_counter.yaml --data fleet/ --output shards/   # then train --data shards/
    dualdiff observations export --db robot.db --output robot.parquet [--robot-id r1 --home-id h1]
    dualdiff observations import BAG --db robot.db   # a recorded /dualdiff/observations bag (.mcap, .db3)
    dualdiff navigate-data --output data/navigate-general  # the ~1.9M-point navigate-to set, as shards
    dualdiff bench-train --output runs/bench-train      # samples/s, 1 vs 2 processes
    dualdiff experiment cabinet|round_table|overlap --output runs/cabinet [--quick]
    dualdiff learning-curve --domain cabinet --output runs/curve [--quick]
    dualdiff adapt --model-dir artifacts/models --output runs/adapt   # time to adapt, real nodes
    dualdiff bench-2d --output runs/bench2d [--quick]
    dualdiff navigate --output runs/navigate [--quick]
    dualdiff demo                       # train (once), serve, call the service, evaluate, plot
    dualdiff benchmark --model-dir ...  # service latency and throughput over DDS
    dualdiff propose --domain cabinet --state 1 2 0.5 -n 5   # call a running service

Each subcommand imports only what it needs, so `dualdiff train` works without ROS.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runtime import run_command

DEFAULT_MODEL_DIR = "artifacts/models"


def _train(args) -> int:
    from .train import run  # one implementation with `torchrun -m dualdiff_ros.train`
    return run(args)


def _navigate_data(args) -> int:
    from .domains import NAVIGATE_TO
    from .fleet import write_navigation_shards
    from .recipes import recipe
    shards = write_navigation_shards(args.output, args.tasks, recipe(args.recipe, NAVIGATE_TO), args.seed,
                                     args.workers, args.chunk, args.rows_per_shard)
    meta = shards.meta
    print(f"wrote {args.output}: {len(shards)} points of {meta['tasks']} tasks in {meta['generation_seconds']} s "
          f"({meta['points_per_second']} points/s, {meta['workers']} workers), data sha256 {shards.data_sha256[:12]}")
    return 0


def _bench_train(args) -> int:
    from .evaluation.train_benchmark import run_from_args
    return run_from_args(args)


def _experiment(args) -> int:
    from .evaluation.experiments import StudySettings, run_study
    from .recipes import recipe
    settings = StudySettings.quick() if args.quick else StudySettings(recipe=recipe(args.recipe))
    if args.seeds:
        settings.seeds = tuple(args.seeds)
    if args.test_conditions:
        settings.test_conditions = args.test_conditions
    result = run_study(args.study, args.output, settings, only=args.configs)
    print((Path(args.output) / "results.md").read_text())
    print(f"wrote {args.output}/results.json, results.md and plots in {result['seconds']} s")
    return 0


def _learning_curve(args) -> int:
    from .evaluation.learning_curve import CurveSettings, run_learning_curve
    from .recipes import recipe
    settings = CurveSettings.quick(domain=args.domain) if args.quick else \
        CurveSettings(domain=args.domain, recipe=recipe(args.recipe))
    changes = {"homes": args.homes, "seed": args.seed, "test_conditions": args.test_conditions,
               "observations": tuple(args.observations) if args.observations else None,
               "cutoffs": tuple(args.cutoffs) if args.cutoffs else None,
               "context_guidance": tuple(args.home_aware) if args.home_aware else None,
               "context_tuning": True if args.home_aware_tuning else None,
               "context_pseudo": tuple(args.home_aware_pseudo) if args.home_aware_pseudo else None,
               "context_places": True if args.home_aware_places else None,
               "context_model": args.home_aware_model,
               "summary_model": args.summary_model, "general_model": args.general_model,
               "context_kinds": tuple(args.context_kinds) if args.context_kinds else None,
               "family": args.family, "skip_scratch": True if args.skip_scratch else None,
               "min_separation": args.min_separation,
               "context_recipe": recipe(args.home_aware_recipe) if args.home_aware_recipe else None}
    for name, value in changes.items():
        if value is not None:
            setattr(settings, name, value)
    result = run_learning_curve(args.output, settings)
    print((Path(args.output) / "results.md").read_text())
    print(f"wrote {args.output}/results.json, results.md and learning_curve_{args.domain}.png in "
          f"{result['seconds']} s")
    return 0


def _demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.model_dir, args.output, args.recipe, retrain=args.retrain,
                    eval_conditions=args.eval_conditions)


def _benchmark(args) -> int:
    from .evaluation.service_benchmark import run_service_benchmark
    given = {"sampler.method": args.sampler_method, "sampler.steps": args.sampler_steps,
             "sampler.fine_steps": args.sampler_fine_steps, "sampler.guidance": args.sampler_guidance}
    overrides = {name: value for name, value in given.items() if value is not None}  # the rest: config/bringup.yaml
    run_service_benchmark(args.model_dir, args.output, requests=args.requests, clients=args.clients,
                          num_samples=args.num_samples, overrides=overrides, mode=args.mode, domain=args.domain,
                          map_kind=args.map, map_resolution=args.map_resolution)
    return 0


def _reliability(args) -> int:
    from .evaluation.reliability import run_reliability
    run_reliability(args.model_dir, args.output, args.requests_per_client, args.kill_rounds)
    return 0


def _data(args) -> int:
    from .domains import fleet_data
    from .domains.spec import resolve_spec
    if args.data_command == "bench":
        result = fleet_data.benchmark_ingest(args.rows, seed=args.seed, with_text=not args.numbers_only)
        print(" ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    if args.data_command == "builtin":
        path = fleet_data.write_builtin(args.domain, args.output, args.rows, args.seed)
        unit = "tasks" if args.domain == "navigate_to" else "rows"
        print(f"wrote {path}: {args.domain} general data ({args.rows} {unit}, seed {args.seed})")
        return 0
    spec = resolve_spec(args.spec)
    if args.data_command == "shards":
        from .spec_training import write_spec_shards
        shards = write_spec_shards(spec, args.data, args.output, args.on_bad, args.rows_per_shard)
        meta = shards.meta
        print(f"wrote {args.output}: {len(shards)} rows of {spec.name} in {len(shards.manifest['shards'])} shard(s) "
              f"({meta['rows_skipped']} skipped{', the first: ' + meta['first_bad'] if meta['first_bad'] else ''}) "
              f"in {meta['seconds']} s")
        return 0
    rows = fleet_data.read_fleet(args.data, spec, args.on_bad)
    print(f"{spec.name} ({spec.source}): {rows.report.describe()}; read in {rows.report.seconds:.2f} s")
    return 0


def _observations(args) -> int:
    from .learning import exchange
    if args.observations_command == "bench":
        print(" ".join(f"{k}={v}" for k, v in exchange.benchmark_export(args.rows, args.seed).items()))
        return 0
    if args.observations_command == "export":
        from .domains.spec import resolve_spec
        spec = resolve_spec(args.spec) if args.spec else None
        result = exchange.export_observations(args.db, args.output, spec, args.domain, args.task, args.robot_id,
                                              args.home_id)
        print(f"wrote {result['path']}: {result['rows']} {result['domain']} observations in {result['seconds']:.2f} s")
        return 0
    result = exchange.import_bag(args.bag, args.db, args.topic)
    per = ", ".join(f"{d}: {n}" for d, n in sorted(result["domains"].items())) or "none"
    print(f"stored {result['rows']} observations in {args.db} ({per}) in {result['seconds']:.2f} s"
          + (f"; skipped {result['skipped']}, the first: {result['first_bad']}" if result["skipped"] else ""))
    return 0


def _propose(args) -> int:
    from .client import propose_once
    return propose_once(args.domain, args.state, args.num_samples, args.mode, args.seed, args.task, args.timeout,
                        args.min_separation)


def build_parser() -> argparse.ArgumentParser:
    from .domains import NAVIGATE_TO
    from .domains.homes import FAMILIES
    from .learning.in_context import CONTEXT_KINDS
    from .recipes import RECIPES
    parser = argparse.ArgumentParser(prog="dualdiff", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default 1, or $DUALDIFF_THREADS)")
    sub = parser.add_subparsers(dest="command", required=True)

    from . import train
    p = sub.add_parser("train", help="train the general prior and the fine-tuned specialized model of domains "
                                     "(also under torchrun: python -m dualdiff_ros.train)")
    train.add_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("data", help="fleet data in Parquet: check it against a spec, write a built-in domain's, "
                                    "measure ingest")
    data = p.add_subparsers(dest="data_command", required=True)
    q = data.add_parser("check", help="read a .parquet file or folder with a spec: rows kept, skipped, the first bad")
    q.add_argument("--spec", required=True, help="spec file (YAML) or a built-in name")
    q.add_argument("--data", required=True, help=".parquet file or a folder of them")
    q.add_argument("--on-bad", default="skip", choices=["skip", "refuse"])
    q = data.add_parser("builtin", help="a built-in domain's generated general data as fleet Parquet")
    q.add_argument("--domain", required=True, choices=["cabinet", "round_table", "navigate_to"])
    q.add_argument("--output", required=True, help=".parquet file to write")
    q.add_argument("--rows", type=int, default=55_398, help="rows (navigate_to: simulator tasks)")
    q.add_argument("--seed", type=int, default=0)
    q = data.add_parser("shards", help="stream Parquet rows into a shard set: `train --spec --data SHARDS` then "
                                       "reads its rows lazily (data larger than memory, torchrun)")
    q.add_argument("--spec", required=True, help="spec file (YAML) or a built-in name")
    q.add_argument("--data", required=True, help=".parquet file or a folder of them")
    q.add_argument("--output", required=True, help="new folder for the shard set")
    q.add_argument("--on-bad", default="skip", choices=["skip", "refuse"])
    q.add_argument("--rows-per-shard", type=int, default=1 << 20)
    q = data.add_parser("bench", help="rows/s reading fleet Parquet (a generated file of --rows rows)")
    q.add_argument("--rows", type=int, default=1_000_000)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--numbers-only", action="store_true", help="no home_id / robot_id / task / stamp columns")
    p.set_defaults(func=_data)

    p = sub.add_parser("observations", help="a robot's observations out to fleet Parquet, recorded bags in")
    obs = p.add_subparsers(dest="observations_command", required=True)
    q = obs.add_parser("export", help="write a robot's stored observations (SQLite) as fleet Parquet")
    q.add_argument("--db", required=True, help="the observation database (the specialized node's storage.path)")
    q.add_argument("--output", required=True, help=".parquet file to write")
    q.add_argument("--domain", default=None, help="which domain (default: the only one in the database)")
    q.add_argument("--task", default=None, help="only this task's observations (default: every task)")
    q.add_argument("--spec", default=None, help="the domain's spec file (default: the built-in spec of its name)")
    q.add_argument("--robot-id", default="", help="written in every row's robot_id")
    q.add_argument("--home-id", default="", help="written in every row's home_id")
    q = obs.add_parser("import", help="store the observations of a recorded ROS 2 bag (.mcap or .db3)")
    q.add_argument("bag", help="a rosbag2 folder, or its .mcap / .db3 file")
    q.add_argument("--db", required=True, help="the observation database to add them to (created if missing)")
    q.add_argument("--topic", default="/dualdiff/observations")
    q = obs.add_parser("bench", help="seconds to export --rows stored observations to Parquet")
    q.add_argument("--rows", type=int, default=100_000)
    q.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_observations)

    p = sub.add_parser("navigate-data", help="the full navigate-to general data set (~1.9M points) as shards")
    p.add_argument("--output", required=True, help="new folder for the shard set")
    p.add_argument("--tasks", type=int, default=69_000, help="simulator tasks (69,000: ~1.9M points)")
    p.add_argument("--recipe", default="full", choices=RECIPES, help="whose map patch and dropout the rows carry")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="generating processes")
    p.add_argument("--chunk", type=int, default=50, help="tasks per job")
    p.add_argument("--rows-per-shard", type=int, default=65_536)
    p.set_defaults(func=_navigate_data)

    p = sub.add_parser("bench-train", help="training samples/s with 1 and 2 processes at one global batch")
    from .evaluation import train_benchmark
    train_benchmark.add_arguments(p)
    p.set_defaults(func=_bench_train)

    p = sub.add_parser("experiment", help="a specialization study: every configuration, several seeds")
    p.add_argument("study", choices=["cabinet", "round_table", "overlap"])
    p.add_argument("--output", required=True)
    p.add_argument("--quick", action="store_true", help="tiny data and models (tests)")
    p.add_argument("--recipe", default="full", choices=RECIPES, help="model size and training length")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--test-conditions", type=int, default=0, help="held-out conditions (default: 1000)")
    p.add_argument("--configs", nargs="+", default=None, metavar="NAME",
                   help="only these configurations (default: all; see docs/RESULTS.md for the names)")
    p.set_defaults(func=_experiment)

    p = sub.add_parser("learning-curve", help="quality against the number of observations, beside the Bayes limit")
    p.add_argument("--domain", default="cabinet", choices=["cabinet", "round_table"],
                   help="a domain with a home family (a spec domain has none: docs/domains.md, "
                        "'Studies on a spec domain')")
    p.add_argument("--output", required=True)
    p.add_argument("--quick", action="store_true", help="tiny data and models (tests)")
    p.add_argument("--recipe", default="demo", choices=RECIPES, help="model size and training length")
    p.add_argument("--homes", type=int, default=None, help="the thesis's home plus homes drawn from the family "
                   "(default 5)")
    p.add_argument("--observations", type=int, nargs="+", default=None, metavar="N",
                   help="observation counts (default 0 1 2 4 8 16 32 64 128)")
    p.add_argument("--cutoffs", type=float, nargs="+", default=None, metavar="F",
                   help="extra proposer rows with the prior guiding above this fraction of the schedule")
    p.add_argument("--home-aware", type=float, nargs="+", default=None, metavar="G",
                   help="also train the home-aware prior and serve it at these guidance scales (1 = plain)")
    p.add_argument("--home-aware-tuning", action="store_true",
                   help="with --home-aware: also fine-tune the home-aware prior on each N, alone and composed")
    p.add_argument("--home-aware-recipe", default=None, choices=RECIPES,
                   help="the home-aware prior's size and training (default: --recipe's)")
    p.add_argument("--home-aware-pseudo", type=float, nargs="+", default=None, metavar="TAU",
                   help="with --home-aware: also rows told of TAU pseudo-observations more (a tempered posterior)")
    p.add_argument("--home-aware-places", action="store_true",
                   help="with --home-aware: also rows of the prior read place by place (home_aware.places)")
    p.add_argument("--home-aware-model", default=None, metavar="PATH",
                   help="with --home-aware: use this saved home-aware prior (dualdiff train --home-aware) "
                        "instead of training one")
    p.add_argument("--context-kinds", nargs="+", default=None, choices=CONTEXT_KINDS,
                   help="with --home-aware: the home-aware priors measured: set (learned set encoder, rows "
                        "home_aware*) and/or summary (rows home_aware_summary*); default: set")
    p.add_argument("--general-model", default=None, metavar="PATH",
                   help="use this saved general prior (dualdiff train) instead of training one")
    p.add_argument("--summary-model", default=None, metavar="PATH",
                   help="with --context-kinds summary: a saved summary-reading home-aware prior")
    p.add_argument("--family", default=None, choices=FAMILIES,
                   help="the homes measured: box (the thesis's family, with the Bayes limit), multi (2-4 places), "
                        "held_out (shape kinds no model trained on); default box")
    p.add_argument("--skip-scratch", action="store_true", help="leave out the from-scratch specialist's row (time)")
    p.add_argument("--min-separation", type=float, default=None, metavar="D",
                   help="also rows asked for proposals at least D apart (the request's min_separation)")
    p.add_argument("--test-conditions", type=int, default=None, help="held-out furniture poses (default 200)")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=_learning_curve)

    from .evaluation import adaptation
    p = sub.add_parser("adapt", help="time to adapt through the real nodes: record observations one by one")
    adaptation.add_arguments(p)
    p.set_defaults(func=adaptation.run_from_args)

    from .evaluation import bench2d, navigation
    p = sub.add_parser("bench-2d", help="DualDiff 2-D mode-capture benchmark")
    bench2d.add_arguments(p)
    p.set_defaults(func=bench2d.run_from_args)

    p = sub.add_parser("navigate", help="navigate-to study in the PyBullet simulator")
    navigation.add_arguments(p)
    p.set_defaults(func=navigation.run_from_args)

    p = sub.add_parser("demo", help="train (once), start the nodes, call the service, evaluate, plot")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    p.add_argument("--output", default="artifacts/demo")
    p.add_argument("--recipe", default="demo", choices=RECIPES)
    p.add_argument("--retrain", action="store_true", help="train again even if this recipe's models exist")
    p.add_argument("--eval-conditions", type=int, default=100, help="held-out conditions per domain and mode")
    p.set_defaults(func=_demo)

    p = sub.add_parser("benchmark", help="service latency (p50/p99) and throughput with concurrent clients")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    p.add_argument("--output", default="artifacts/benchmark")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--sampler-method", choices=["ddpm", "ddim", "dpm_solver"],
                   help="the node's sampler.method (default: config/bringup.yaml's)")
    p.add_argument("--sampler-steps", type=int, help="the node's sampler.steps (DDIM, DPM-Solver; 0 = all)")
    p.add_argument("--sampler-guidance", type=float, default=None,
                   help="override sampler.guidance (navigate_to: 1 = no guidance on the map)")
    p.add_argument("--sampler-fine-steps", type=int,
                   help="the node's sampler.fine_steps (last levels taken one by one; 0 = even spacing)")
    p.add_argument("--mode", default="joint", choices=["joint", "general", "specialized"], help="request mode")
    p.add_argument("--domain", default="cabinet", choices=["cabinet", NAVIGATE_TO],
                   help="navigate_to: a held-out ball state with its 200 x 200 map, checked against it")
    p.add_argument("--map", default="occupancy", choices=["occupancy", "costmap"],
                   help="navigate_to: the map as an occupancy grid or as nav2 publishes its costmap")
    p.add_argument("--map-resolution", type=float, default=0.1,
                   help="navigate_to: metres per map cell (0.05: 400 x 400)")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("reliability", help="hostile-client probes, load, small-beside-large latency, kill -9 rounds")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="cabinet and round-table models (make demo)")
    p.add_argument("--output", default="artifacts/reliability")
    p.add_argument("--requests-per-client", type=int, default=100)
    p.add_argument("--kill-rounds", type=int, default=3)
    p.set_defaults(func=_reliability)

    p = sub.add_parser("propose", help="call /dualdiff/propose_placements of running nodes once")
    p.add_argument("--domain", default="cabinet")
    p.add_argument("--task", default="")
    p.add_argument("--state", type=float, nargs="+", required=True)
    p.add_argument("-n", "--num-samples", type=int, default=8)
    p.add_argument("--mode", default="joint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--min-separation", type=float, default=0.0,
                   help="proposals at least this far apart (0 = no constraint); fewer may come back")
    p.set_defaults(func=_propose)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(f"dualdiff {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
