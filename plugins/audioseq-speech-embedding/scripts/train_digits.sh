#!/usr/bin/env bash
# Train the plugin's spoken-digit model on the Free Spoken Digit Dataset (official split:
# recording index 0-4 held out for testing) plus synthetic voices, on the speech-embedding
# feature, and install it as audioseq_speech_embedding/models/digits-speech-embedding.safetensors.
#
#   plugins/audioseq-speech-embedding/scripts/train_digits.sh [RECORDINGS_DIR]
#                                                  (default: ../shared/data/fsdd/recordings)
#
# Needs audioseq and this plugin installed, and espeak-ng and flite for the synthetic voices
# (scripts/fsdd_training_set.sh), which join the training split only; validation and test are
# recordings. The recipe is the one measured on unseen speakers in BENCHMARKS.md ("A
# representation learned from many speakers").
set -euo pipefail
cd "$(dirname "$0")/../../.."
recordings="${1:-../shared/data/fsdd/recordings}"
models=plugins/audioseq-speech-embedding/audioseq_speech_embedding/models
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

scripts/fsdd_training_set.sh "$recordings" "$work"
audioseq train --dataset manifest --data "$work/fsdd.csv" --out "$work/digits.safetensors" \
    --features speech-embedding --feature-opt pad=0.5 --sample-rate 8000 --no-utterance-norm \
    --cell gru --hidden 48 --layers 1 --bidirectional --pooling attention \
    --epochs 30 --lr 3e-3 --seed 0
mkdir -p "$models"
cp "$work/digits.safetensors" "$models/digits-speech-embedding.safetensors"
cp "$work/digits.metrics.json" benchmarks/results/digits-speech-embedding-training.json
audioseq info digits-speech-embedding
