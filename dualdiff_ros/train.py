"""`python -m dualdiff_ros.train`: `dualdiff train`, as one process or as one rank of many.

    python -m dualdiff_ros.train --domain cabinet --model-dir models --recipe quick
    python -m dualdiff_ros.train --spec mug_counter.yaml --data fleet/ --model-dir models   # your own domain
    torchrun --standalone --nproc-per-node 2 -m dualdiff_ros.train --domain cabinet --model-dir models
    torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \
        -m dualdiff_ros.train --domain navigate_to --recipe full --data DATA --model-dir models

`dualdiff train` runs `run` below in one process (world size 1: the same code, no process group).
Under torchrun each rank joins the group (gloo on CPU, NCCL on CUDA), trains the general prior on
its share of every global batch, and rank 0 writes the checkpoints, the resumable state, the logs
and the progress bar. Torch uses one thread per process unless --threads says otherwise.
"""
from __future__ import annotations

import argparse
import sys

DEFAULT_MODEL_DIR = "artifacts/models"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `dualdiff train`, shared with `python -m dualdiff_ros.train`."""
    from .diffusion.cluster import DEVICES
    from .domains.spec import BUILTIN_SPECS
    from .learning.in_context import CONTEXT_KINDS, SET_READERS
    from .recipes import RECIPES

    p.add_argument("--domain", nargs="+", default=None, choices=list(BUILTIN_SPECS),
                   help="built-in domains to train from their generators (default: cabinet round_table)")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help="train the domain of this spec (YAML, or a built-in name) from the Parquet rows of --data "
                        "(docs/domains.md, 'Your own domain')")
    p.add_argument("--specialized-data", default=None, metavar="PATH",
                   help="with --spec: also fine-tune the specialized model on these Parquet rows (one home's)")
    p.add_argument("--on-bad", default="skip", choices=["skip", "refuse"],
                   help="with --spec: rows with non-finite or out-of-range numbers are skipped (counted, the first "
                        "named) or refused")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR, help="ModelStore folder (default %(default)s)")
    p.add_argument("--recipe", default="demo", choices=RECIPES, help="model size and training length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="retrain even if checkpoints of this recipe exist")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="navigate_to: train the general prior on this shard set (`dualdiff navigate-data`); with "
                        "--spec: a .parquet file, a folder of them, or their shard set (`dualdiff data shards`)")
    p.add_argument("--general-epochs", type=int, default=None, metavar="N",
                   help="with --data: the prior's epochs over the shard set (default: the recipe's, 30 for full; "
                        "a set 14x the size needs fewer for the same optimiser steps: docs/RESULTS.md section 9)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto: CUDA (NCCL) where torch sees a GPU, else CPU (gloo)")
    p.add_argument("--state-every", type=int, default=500, metavar="K",
                   help="write the prior's resumable training state every K steps (0: only at the end)")
    p.add_argument("--home-aware", action="store_true",
                   help="cabinet / round_table: also train the home-aware prior (answers from a home's first "
                        "observations with no training; docs/RESULTS.md, section 8)")
    p.add_argument("--home-aware-recipe", default=None, choices=RECIPES,
                   help="with --home-aware: the home-aware prior's size and training (default: --recipe's), "
                        "e.g. a demo-size general prior beside a full-size home-aware one")
    p.add_argument("--home-aware-context", default="set", choices=CONTEXT_KINDS,
                   help="with --home-aware: how the prior reads a home's observations: set (a learned set encoder, "
                        "any shape of home) or summary (count, min, max, mean: one box or disc only)")
    p.add_argument("--home-aware-reader", default="kernel", choices=SET_READERS,
                   help="with --home-aware-context set: kernel (pooled encoding plus a kernel read of the points at "
                        "every denoising step; the default) or pool (the pooled encoding only, the earlier network)")
    p.add_argument("--resume", action="store_true",
                   help="continue the prior from its training state (after an interruption, also kill -9)")
    return p


def run(args) -> int:
    """Train every domain of `args` with the processes torchrun started (or this one alone)."""
    from .diffusion.cluster import Cluster
    from .domains import NAVIGATE_TO

    cluster = Cluster.start(args.device)
    try:
        if cluster.is_main and cluster.distributed:
            print(f"[train] {cluster.world_size} processes, backend {cluster.backend}, device {cluster.device.type}")
        general_epochs = getattr(args, "general_epochs", None)
        if general_epochs is not None and (args.data is None or general_epochs < 1):
            raise ValueError(f"--general-epochs {general_epochs}: give a positive number, with --data (a shard set); "
                             "the recipes' own data keep the recipe's epochs")
        if getattr(args, "spec", None):
            if args.domain:
                raise ValueError(f"--spec and --domain {' '.join(args.domain)}: give one of them (the spec names its "
                                 "domain)")
            from .spec_training import train_from_args
            train_from_args(args, cluster)
            return 0
        if getattr(args, "specialized_data", None):
            raise ValueError("--specialized-data is for --spec domains: the built-in domains draw their own")
        for domain in args.domain or ["cabinet", "round_table"]:
            if args.data is not None:
                if domain != NAVIGATE_TO:
                    raise ValueError(f"--data (a shard set) is for --domain navigate_to, not {domain}")
                from .fleet import train_navigation_sharded
                train_navigation_sharded(args.model_dir, args.recipe, args.seed, args.data, cluster,
                                         args.state_every, args.resume, progress=cluster.is_main,
                                         general_epochs=general_epochs)
                continue
            from .training_jobs import train_domain
            train_domain(domain, args.model_dir, args.recipe, seed=args.seed, force=args.force or args.resume,
                         progress=cluster.is_main, cluster=cluster, state_every=args.state_every, resume=args.resume)
            if getattr(args, "home_aware", False) and domain != NAVIGATE_TO and cluster.is_main:
                from .training_jobs import train_home_aware
                train_home_aware(domain, args.model_dir, getattr(args, "home_aware_recipe", None) or args.recipe,
                                 args.seed, args.force, progress=True,
                                 kind=getattr(args, "home_aware_context", "set"),
                                 reader=getattr(args, "home_aware_reader", "kernel"))
    finally:
        cluster.close()
    return 0


def main(argv=None) -> int:
    from .runtime import run_command

    parser = argparse.ArgumentParser(prog="python -m dualdiff_ros.train", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads per process (default 1, or $DUALDIFF_THREADS)")
    args = add_arguments(parser).parse_args(argv)
    return run_command("dualdiff train", run, args)


if __name__ == "__main__":
    sys.exit(main())
