"""Unseen-speaker accuracy against the number of speakers trained on (FSDD).

For each speaker left out, the recipe trains on the recordings of k of the other four
(k = 1 … 4; for k < 4 a few subsets drawn at random, the same for every recipe run) and is
tested on all 500 recordings of the speaker left out. Validation is drawn from the training
speakers' recordings, as ``fsdd_speakers.py`` draws it. How the mean and the worst case move
with k says what one more speaker is worth to the recipe.

Usage: python benchmarks/fsdd_speaker_count.py [--recipe JSON] [--speakers a,b] [--subsets N]
                                               [--seed N] [--out results.json]
The recipe is TrainConfig keyword arguments as JSON (default: the defaults).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import time
from pathlib import Path

import numpy as np

from audioseq.training import train

from fsdd_speakers import NAME, SPEAKERS, examples, make_config


def subsets(others: list[str], k: int, count: int, rng: random.Random) -> list[tuple[str, ...]]:
    """Up to ``count`` distinct k-speaker subsets of ``others`` (all of them when there are fewer)."""
    every = list(itertools.combinations(others, k))
    return every if len(every) <= count else rng.sample(every, count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="{}")
    parser.add_argument("--speakers", default=",".join(SPEAKERS), help="speakers to leave out in turn")
    parser.add_argument("--subsets", type=int, default=2, help="training-speaker subsets per k < 4")
    parser.add_argument("--seed", type=int, default=0, help="draws the subsets")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    recipe = json.loads(args.recipe)
    config = make_config(recipe)
    runs = []
    for held_out in [s for s in args.speakers.split(",") if s]:
        rng = random.Random(f"{args.seed}-{held_out}")
        others = [s for s in SPEAKERS if s != held_out]
        every = examples({held_out})
        for k in range(1, len(others) + 1):
            for chosen in subsets(others, k, args.subsets, rng):
                keep = [e for e in every if e.split == "test" or NAME.search(e.audio).group(2) in chosen]
                start = time.perf_counter()
                accuracy = train(keep, config).metrics["test"]["accuracy"]
                runs.append({"held_out": held_out, "k": k, "trained_on": list(chosen), "accuracy": accuracy,
                             "seconds": time.perf_counter() - start})
                print(f"{held_out} from {'+'.join(chosen)}: {accuracy:.4f}", flush=True)
    summary = {}
    for k in sorted({r["k"] for r in runs}):
        # Each held-out speaker's mean over its subsets, then the mean and worst over speakers.
        per_speaker = {s: float(np.mean([r["accuracy"] for r in runs if r["k"] == k and r["held_out"] == s]))
                       for s in sorted({r["held_out"] for r in runs})}
        summary[k] = {"per_speaker": per_speaker, "mean": float(np.mean(list(per_speaker.values()))),
                      "worst": min(per_speaker.values())}
        print(f"k={k}: mean {summary[k]['mean']:.1%}, worst {summary[k]['worst']:.1%}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"recipe": recipe, "subsets_per_k": args.subsets, "seed": args.seed,
                                        "runs": runs, "by_k": summary}, indent=2))


if __name__ == "__main__":
    main()
