"""Prediction throughput of every ready-trained model on the 2,500 FSDD clips.

Each registered model (``audioseq.bundled_models()``: the bundled ``digits`` and those plugins
ship, such as ``digits-speech-embedding``) classifies the same clips with ``Classifier.predict``
in this process, in turn, ``--rounds`` times; each model's figure is its best round, and the
ratio is against ``digits``. Also reports each model's accuracy on the official test split
(recording index 0-4), from the same predictions.

Usage: python benchmarks/bench_models.py [--rounds 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

import audioseq

from common import fsdd_files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    files = fsdd_files()
    test = {f: Path(f).name[0] for f in files if int(re.search(r"_(\d+)\.wav$", f).group(1)) < 5}
    models = {name: audioseq.load(name) for name in audioseq.bundled_models()}
    for clf in models.values():
        clf.predict(files[:64])  # warm up: threads, sessions, caches
    best: dict[str, float] = {}
    labels: dict[str, dict[str, str]] = {}  # model -> clip -> predicted label (the last round's)
    for _ in range(args.rounds):
        for name, clf in models.items():
            start = time.perf_counter()
            preds = clf.predict(files)
            seconds = time.perf_counter() - start
            best[name] = min(best.get(name, float("inf")), seconds)
            assert len(preds) == len(files) and not any(p.error for p in preds)
            labels[name] = {p.source: p.label for p in preds}
    results = {"clips": len(files), "rounds": args.rounds, "torch_threads": torch.get_num_threads(), "models": {}}
    print("| model | runtime | parameters | clips/s | vs digits | official test split |\n|---|---|---|---|---|---|")
    for name, clf in models.items():
        accuracy = sum(labels[name][f] == label for f, label in test.items()) / len(test)
        rate = len(files) / best[name]
        ratio = best["digits"] / best[name] if "digits" in best else float("nan")
        results["models"][name] = {"clips_per_s": rate, "seconds": best[name], "vs_digits": ratio,
                                   "runtime": clf.runtime, "parameters": clf.num_parameters(),
                                   "official_test_accuracy": accuracy}
        print(f"| {name} | {clf.runtime} | {clf.num_parameters():,} | {rate:,.0f} | {ratio:.2f}x | {accuracy:.1%} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
