"""Adapting a model to a new voice from a few of its recordings (``train(..., init=model)``).

For each speaker with a model that never heard them (``fsdd_speakers.py --save-models DIR``
writes ``DIR/unseen-<speaker>.safetensors``), fine-tune that model on k recordings per digit
of the speaker, exactly as ``audioseq train --init MODEL`` would (the recordings split into
training and validation by the engine), and test on all of the speaker's other recordings.
Also tests the other speakers' official test clips (recording index 0-4) before and after,
to show what the adaptation costs them.

Usage: python benchmarks/fsdd_adapt.py --models DIR [--speakers a,b] [--shots 2,3,5]
                                       [--epochs 30] [--lr 1e-3] [--seed 0] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import audioseq
from audioseq.dataset import Example
from audioseq.evaluation import evaluate
from audioseq.training import TrainConfig, train

from fsdd_speakers import NAME, confusions
from common import fsdd_files


def recordings() -> dict[str, dict[str, list[str]]]:
    """speaker → digit → files, in recording order."""
    out: dict[str, dict[str, list[str]]] = {}
    for f in fsdd_files():
        digit, speaker, index = NAME.search(f).groups()
        out.setdefault(speaker, {}).setdefault(digit, []).append((int(index), f))
    return {s: {d: [f for _, f in sorted(v)] for d, v in digits.items()} for s, digits in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--speakers", default=None, help="Default: every speaker with a model in --models.")
    parser.add_argument("--shots", default="2,3,5", help="Recordings per digit to adapt on.")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    by_speaker = recordings()
    speakers = args.speakers.split(",") if args.speakers else sorted(
        p.stem.removeprefix("unseen-") for p in args.models.glob("unseen-*.safetensors"))
    results = {"settings": vars(args) | {"models": str(args.models), "out": str(args.out)}, "speakers": {}}
    for speaker in speakers:
        model = audioseq.load(args.models / f"unseen-{speaker}.safetensors")
        others = [Example(f, d, "test") for s, digits in by_speaker.items() if s != speaker
                  for d, files in digits.items() for f in files[:5]]
        rng = random.Random(args.seed)
        picks = {d: rng.sample(files, len(files)) for d, files in by_speaker[speaker].items()}  # a random order
        row = {"others_before": evaluate(model, others)["accuracy"]}
        all_own = [Example(f, d, "test") for d, files in picks.items() for f in files]
        row["unseen_before"] = evaluate(model, all_own)["accuracy"]
        for k in map(int, args.shots.split(",")):
            shots = [Example(f, d, None) for d, files in picks.items() for f in files[:k]]
            rest = [Example(f, d, "test") for d, files in picks.items() for f in files[k:]]
            start = time.perf_counter()
            tuned = train(shots, TrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed), init=model).classifier
            own = evaluate(tuned, rest)
            before = evaluate(model, rest)["accuracy"]
            row[f"{k}_shots"] = {
                "before": before, "after": own["accuracy"], "others_after": evaluate(tuned, others)["accuracy"],
                "confusions_after": confusions(own), "seconds": round(time.perf_counter() - start, 1),
            }
            print(f"{speaker}, {k} recordings per digit: {before:.3f} → {own['accuracy']:.3f} on the other "
                  f"{len(rest)}; other speakers {row['others_before']:.3f} → {row[f'{k}_shots']['others_after']:.3f}",
                  flush=True)
        results["speakers"][speaker] = row
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
