#!/bin/bash
# One navigate-to prior trained by 1 process and by 2 torchrun processes (same seed, same global batch,
# same 500-task shard set), then the navigate study's general and proposer rows of each
# (docs/RESULTS.md, section 9). Run from the project root after `make setup`; writes under runs/.
set -euo pipefail
[ -f runs/ws-shards/manifest.json ] || .venv/bin/dualdiff navigate-data --output runs/ws-shards --tasks 500 --workers 2
.venv/bin/python -m dualdiff_ros.train --domain navigate_to --recipe full --data runs/ws-shards \
    --model-dir runs/ws-1 --state-every 0 &
.venv/bin/torchrun --standalone --nproc-per-node 2 -m dualdiff_ros.train --domain navigate_to --recipe full \
    --data runs/ws-shards --model-dir runs/ws-2 --state-every 0 &
wait
for w in 1 2; do
  .venv/bin/dualdiff navigate --output "runs/ws-study-$w" --data-dir "runs/navdata_ws$w" --seeds 0 --num-states 150 \
      --general-model "runs/ws-$w/navigate_to/general.safetensors" --configs general proposer &
done
wait
tail -n 3 runs/ws-study-1/results.md runs/ws-study-2/results.md
