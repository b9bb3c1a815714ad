#!/usr/bin/env bash
# Train a ready-trained spoken-digit model on the Free Spoken Digit Dataset (official split:
# recording index 0-4 held out for testing) plus synthetic voices, and install it as
# audioseq/models/MODEL.safetensors.
#
#   scripts/train_digits.sh [RECORDINGS_DIR] [MODEL]   (defaults: ../shared/data/fsdd/recordings, digits)
#
# MODEL is digits (the bundled model: a GRU on the speech-embedding-lite feature) or
# digits-lstm (audioseq train's default network, an LSTM on MFCCs, so that its forget, input
# and output gates can be watched in the app).
# Needs espeak-ng and flite for the synthetic voices (scripts/fsdd_training_set.sh), which
# join the training split only; validation and test are recordings. The recipe is the commands
# below; with one torch thread it is deterministic for its seeds on the same machine and
# synthesiser versions.
set -euo pipefail
cd "$(dirname "$0")/.."
recordings="${1:-../shared/data/fsdd/recordings}"
model="${2:-digits}"
case "$model" in
    digits) recipe=(--features speech-embedding-lite --no-utterance-norm
                    --cell gru --hidden 48 --layers 1 --bidirectional --pooling attention
                    --augment-opt noise_p=0.5 --augment-opt snr_db=10,40
                    --epochs 45 --patience 15 --batch-size 32 --lr 3e-3 --seed 0) ;;
    digits-lstm) recipe=(--seed 0) ;;  # every other setting: audioseq train's defaults
    *) echo "unknown model $model: digits or digits-lstm" >&2; exit 2 ;;
esac
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1

scripts/fsdd_training_set.sh "$recordings" "$work"
audioseq train --dataset manifest --data "$work/fsdd.csv" --out "$work/$model.safetensors" \
    --sample-rate 8000 "${recipe[@]}"
mkdir -p audioseq/models
cp "$work/$model.safetensors" "audioseq/models/$model.safetensors"
cp "$work/$model.metrics.json" "benchmarks/results/$model-training.json"
audioseq info "$model"
