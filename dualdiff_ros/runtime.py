"""Process-wide settings every entry point applies: the CLI, `dualdiff_bringup` and each node's main.

Torch defaults to one intra-op thread per core. The product's networks are small MLPs run on
batches of tens of rows: splitting each of their thousand small matmuls a request across
threads costs more in synchronisation than it saves (a served request is much slower with
torch's default on a 2-core machine: docs/RESULTS.md, section 3).
"""
from __future__ import annotations

import os

THREADS_ENV = "DUALDIFF_THREADS"


def default_threads() -> int:
    """$DUALDIFF_THREADS, else 1; a value that is not a positive integer is refused by name."""
    raw = os.environ.get(THREADS_ENV, "1")
    try:
        threads = int(raw)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: set it to a positive number of torch threads (or unset it: 1)")
    return threads


def limit_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: default_threads()); returns the number set."""
    import torch

    threads = default_threads() if threads is None else max(1, int(threads))
    torch.set_num_threads(threads)
    return threads


def run_command(name: str, command, args) -> int:
    """Run a command line's `command(args)` with the torch threads of `args.threads`: the exit code.

    A user's mistake (ValueError, a missing file) is one line on stderr and exit 2, Ctrl-C is 130:
    never a traceback for what the message can say.
    """
    import sys

    try:
        limit_torch_threads(args.threads)
        return int(command(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
