"""Teaching words from one voice: how well a model trained on a few recordings of one speaker
recognises the same words from other speakers.

This is what the app's Teach page does when someone records new words: train a new model, from
scratch, on their own recordings. For each FSDD speaker and k recordings per digit (the
first k of a random order), train on those alone with the Teach page's default network
(``--settings app``; ``--settings engine``: the engine's defaults) — the engine holds one recording per digit out
for validation — and test on the four other speakers' 2,000 recordings and on the speaker's
own remaining ones. Each feature named is tried with the same network and settings, so the
rows differ only in what the network hears.

Usage: python benchmarks/fsdd_teach.py [--features logmel,speech-embedding] [--shots 1,3,10]
                                       [--settings app|engine] [--speakers a,b] [--seed 0]
                                       [--out results.json]
``speech-embedding`` needs the plugin: ``pip install -e plugins/audioseq-speech-embedding``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from audioseq.dataset import Example
from audioseq.evaluation import evaluate
from audioseq.training import TrainConfig, train

from fsdd_adapt import recordings
from fsdd_speakers import confusions

# The Teach page's defaults (ui/app_pages/teach.py): a small unidirectional network, augmentation on.
APP_SETTINGS = {"hidden_size": 32, "num_layers": 1, "bidirectional": False, "pooling": "attention", "epochs": 30}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", default="logmel,speech-embedding")
    parser.add_argument("--shots", default="1,3,10", help="Recordings per digit to train on.")
    parser.add_argument("--settings", choices=["app", "engine"], default="app")
    parser.add_argument("--speakers", default=None, help="Default: all five.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    by_speaker = recordings()
    speakers = args.speakers.split(",") if args.speakers else sorted(by_speaker)
    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "runs": []}
    for speaker in speakers:
        rng = random.Random(args.seed)
        picks = {d: rng.sample(files, len(files)) for d, files in sorted(by_speaker[speaker].items())}
        others = [Example(f, d, "test") for s, digits in by_speaker.items() if s != speaker
                  for d, files in digits.items() for f in files]
        for k in map(int, args.shots.split(",")):
            shots = [Example(f, d, None) for d, files in picks.items() for f in files[:k]]
            rest = [Example(f, d, "test") for d, files in picks.items() for f in files[k:]]
            for feature in args.features.split(","):
                start = time.perf_counter()
                settings = APP_SETTINGS if args.settings == "app" else {}
                model = train(shots, TrainConfig(feature=feature, seed=args.seed, **settings)).classifier
                seconds = time.perf_counter() - start
                heard = evaluate(model, others)
                run = {"speaker": speaker, "shots": k, "feature": feature, "others": heard["accuracy"],
                       "own_rest": evaluate(model, rest)["accuracy"], "train_seconds": round(seconds, 1),
                       "confusions": confusions(heard)}
                results["runs"].append(run)
                print(f"{speaker}, {k} per digit, {feature}: other speakers {run['others']:.3f}, "
                      f"own other recordings {run['own_rest']:.3f} ({seconds:.0f} s)", flush=True)
    for feature in args.features.split(","):
        for k in map(int, args.shots.split(",")):
            rows = [r for r in results["runs"] if r["feature"] == feature and r["shots"] == k]
            if rows:
                mean = sum(r["others"] for r in rows) / len(rows)
                print(f"{feature}, {k} per digit: other speakers {mean:.3f} mean, "
                      f"{min(r['others'] for r in rows):.3f} worst of {len(rows)}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
