#!/usr/bin/env bash
# Train the bundled spoken-digit model on the Free Spoken Digit Dataset (official split:
# recording index 0-4 held out for testing) plus synthetic voices, and install it as
# audioseq/models/digits.safetensors.
#
#   scripts/train_digits.sh [RECORDINGS_DIR]     (default: ../shared/data/fsdd/recordings)
#
# Needs espeak-ng and flite for the synthetic voices (scripts/fsdd_training_set.sh), which
# join the training split only; validation and test are recordings. The recipe is the commands
# below; with one torch thread it is deterministic for its seeds on the same machine and
# synthesiser versions.
set -euo pipefail
cd "$(dirname "$0")/.."
recordings="${1:-../shared/data/fsdd/recordings}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

scripts/fsdd_training_set.sh "$recordings" "$work"
audioseq train --dataset manifest --data "$work/fsdd.csv" --out "$work/digits.safetensors" \
    --features mfcc --feature-opt n_mfcc=13 --feature-opt f_min=100 --sample-rate 8000 \
    --cell gru --hidden 56 --layers 2 --bidirectional --pooling attention \
    --augment-opt freq_mask_width=2 \
    --epochs 40 --patience 10 --batch-size 32 --lr 3e-3 --seed 1
mkdir -p audioseq/models
cp "$work/digits.safetensors" audioseq/models/digits.safetensors
cp "$work/digits.metrics.json" benchmarks/results/digits-training.json
audioseq info digits
