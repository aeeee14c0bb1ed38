"""``python -m dualdiff_ros.sim``: benchmark checks, make datasets, score the ring baseline, draw a scene."""
from __future__ import annotations

import argparse
import json
import sys

from . import (
    NavigateData,
    benchmark_checks,
    draw_scene,
    evaluate_proposer,
    general_dataset,
    generate_scene,
    held_out_states,
    ring_proposer,
    specialized_datasets,
)
from .dataset import FULL_GENERAL_TASKS, FULL_SPECIALIZED_TEST_TASKS, FULL_SPECIALIZED_TRAIN_TASKS


def _print(obj) -> None:
    json.dump(obj, sys.stdout, indent=1, default=float)
    print()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dualdiff_ros.sim", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="checks per second of the validity test")
    b.add_argument("--scenes", type=int, default=20)
    b.add_argument("--targets", type=int, default=2000, help="targets per navigate step")
    g = sub.add_parser("general", help="general dataset (9 non-ball types)")
    g.add_argument("--tasks", type=int, default=FULL_GENERAL_TASKS)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--out", default="data/navigate_general.npz")
    s = sub.add_parser("specialized", help="navigate-to-ball train/test datasets")
    s.add_argument("--train-tasks", type=int, default=FULL_SPECIALIZED_TRAIN_TASKS)
    s.add_argument("--test-tasks", type=int, default=FULL_SPECIALIZED_TEST_TASKS)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--out-prefix", default="data/navigate_ball")
    r = sub.add_parser("ring", help="score the ring baseline on a saved dataset")
    r.add_argument("dataset")
    r.add_argument("--samples", type=int, default=16)
    r.add_argument("--states", type=int, default=0, help="first N states only (0 = all)")
    pl = sub.add_parser("plot", help="draw a scene with ring proposals")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--task", type=int, default=0)
    pl.add_argument("--out", default="scene.png")
    args = ap.parse_args(argv)

    if args.command == "bench":
        _print(benchmark_checks(n_scenes=args.scenes, targets_per_step=args.targets))
    elif args.command == "general":
        data = general_dataset(args.tasks, args.seed, progress=True, workers=args.workers, path=args.out)
        _print(data.meta)
    elif args.command == "specialized":
        train, test = specialized_datasets(args.train_tasks, args.test_tasks, args.seed, progress=True,
                                           path_prefix=args.out_prefix)
        _print({"train": train.meta, "test": test.meta})
    elif args.command == "ring":
        held_out = held_out_states(NavigateData.load(args.dataset))
        if args.states:
            held_out = held_out.head(args.states)
        _print(evaluate_proposer(ring_proposer, held_out, args.samples))
    elif args.command == "plot":
        _plot(args)
    return 0


def _plot(args) -> None:
    import numpy as np

    from .world import World

    scene = generate_scene(args.seed, args.task)
    step = scene.steps[0]
    rect = scene.object_rects[step.object_index]
    proposals = ring_proposer(np.concatenate([rect, np.zeros(5)]), 200, np.random.default_rng(0))[0]
    with World(scene) as world:
        world.set_step(step)
        valid = world.check_targets(step.object_index, proposals)
    draw_scene(scene, args.out, step.object_index, proposals, valid, absent=step.absent,
               title=f"seed {args.seed}, task {args.task}: ring proposals for the {scene.object_kinds[0]}")
    print(args.out)


if __name__ == "__main__":
    sys.exit(main())
