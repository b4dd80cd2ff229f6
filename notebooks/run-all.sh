#!/usr/bin/env bash
# Executes lessons at their real size with papermill and saves the outputs into the notebooks themselves.
#   CIFAR_LIGHTNING_SOURCE=folder PATH_DATASETS=/path/to/cifar10-jpeg bash notebooks/run-all.sh [NN ...]
# With no arguments it runs every lesson in order; with numbers (e.g. `01 05`) only those lessons.
# Each lesson runs in notebooks/ with the same parameters cell CI uses, so only CIFAR_LIGHTNING_SMOKE differs.
set -euo pipefail
cd "$(dirname "$0")"
unset CIFAR_LIGHTNING_SMOKE
# No MPLBACKEND: the kernel's own inline backend is what puts the figures into the saved outputs (agg would drop them).
unset MPLBACKEND
export WANDB_MODE=${WANDB_MODE:-offline}
if [ $# -gt 0 ]; then
  notebooks=(); for n in "$@"; do notebooks+=("$n"-*.ipynb); done
else
  notebooks=([0-9][0-9]-*.ipynb)
fi
for nb in "${notebooks[@]}"; do
  start=$(date +%s)
  papermill --kernel python3 --cwd . --no-progress-bar "$nb" "$nb"
  python3 clean_outputs.py "$nb"   # widget warnings of machines without ipywidgets
  echo "$nb: $(( $(date +%s) - start )) s"
done
