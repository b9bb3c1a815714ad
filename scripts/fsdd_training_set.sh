#!/usr/bin/env bash
# The training set of the ready-trained digit models: synthetic voices in DIR/voices and
# DIR/fsdd.csv, a manifest of the FSDD recordings (official split: recording index 0-4 is test;
# validation drawn from every speaker's recordings) with the voices added to training only.
#
#   scripts/fsdd_training_set.sh RECORDINGS_DIR DIR
#
# Needs espeak-ng and flite (scripts/synth_speech.py leaves festival out unless asked).
set -euo pipefail
cd "$(dirname "$0")/.."
python scripts/synth_speech.py "$2/voices" --per-word 200 --seed 0
python scripts/fsdd_manifest.py "$1" "$2/fsdd.csv" --no-groups --extra "$2/voices"
