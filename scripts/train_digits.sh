#!/usr/bin/env bash
# Train the bundled spoken-digit model on the Free Spoken Digit Dataset (official split:
# recording index 0-4 held out for testing) and install it as audioseq/models/digits.safetensors.
#
#   scripts/train_digits.sh [RECORDINGS_DIR]     (default: ../shared/data/fsdd/recordings)
#
# The recipe is the command below; it is deterministic for a given seed on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
recordings="${1:-../shared/data/fsdd/recordings}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python scripts/fsdd_manifest.py "$recordings" "$work/fsdd.csv" --no-groups
audioseq train --dataset manifest --data "$work/fsdd.csv" --out "$work/digits.safetensors" \
    --features mfcc --feature-opt n_mfcc=13 --feature-opt f_min=100 \
    --cell gru --hidden 56 --layers 2 --bidirectional --pooling attention \
    --augment-opt freq_mask_width=2 \
    --epochs 40 --patience 10 --batch-size 32 --lr 3e-3 --seed 0
mkdir -p audioseq/models
cp "$work/digits.safetensors" audioseq/models/digits.safetensors
cp "$work/digits.metrics.json" benchmarks/results/digits-training.json
audioseq info digits
