"""Combine unseen-speaker models: several seeds' models averaged, or one model over its clips
played at several speeds (test-time augmentation).

Reads the models that ``fsdd_speakers.py --save-models DIR`` writes (``DIR/unseen-SPEAKER.safetensors``,
each trained without SPEAKER) and scores each speaker's 500 recordings with the mean of the
log-probabilities over the models of the given folders and over the speeds (a clip played s
times as fast, as ``fsdd_speakers.higher_voice`` plays it; 1 keeps it).

Usage: python benchmarks/fsdd_combine.py DIR [DIR ...] [--speeds 0.9,0.95,1,1.05,1.1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import audioseq

from fsdd_speakers import SPEAKERS, examples, higher_voice


def log_probabilities(clf: audioseq.Classifier, inputs: list) -> np.ndarray:
    """(N, labels) log-probabilities, labels in ``clf.labels`` order."""
    preds = clf.predict(inputs)
    failed = [p.source for p in preds if p.error]
    if failed:
        raise SystemExit(f"{len(failed)} clips failed, e.g. {failed[0]}")
    return np.log(np.array([[p.probabilities[label] for label in clf.labels] for p in preds]) + 1e-12)


def accuracy(scores: np.ndarray, labels: list[str], truth: list[str]) -> float:
    """Share of rows of ``scores`` (N, labels) whose highest label is the true one."""
    return float(np.mean([labels[i] == t for i, t in zip(scores.argmax(1), truth)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--speeds", default="1")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    speeds = [float(s) for s in args.speeds.split(",")]
    results: dict = {"folders": [str(f) for f in args.folders], "speeds": speeds, "per_speaker": {}, "alone": {}}
    for speaker in SPEAKERS:
        test = [e for e in examples({speaker}) if e.split == "test"]
        truth = [e.label for e in test]
        views = {s: test if s == 1.0 else higher_voice(test, s) for s in speeds}
        total, alone, labels = 0.0, {}, None
        for folder in args.folders:
            clf = audioseq.load(folder / f"unseen-{speaker}.safetensors")
            if labels not in (None, clf.labels):
                raise SystemExit(f"{folder}: labels {clf.labels} differ from the first model's {labels}")
            labels = clf.labels
            for s, view in views.items():
                scores = log_probabilities(clf, [e.audio for e in view])
                alone[f"{folder.name} x{s:g}"] = accuracy(scores, labels, truth)
                total = total + scores
        results["per_speaker"][speaker] = accuracy(total, labels, truth)
        results["alone"][speaker] = alone
        print(f"{speaker}: combined {results['per_speaker'][speaker]:.4f}; alone {alone}", flush=True)
    accs = list(results["per_speaker"].values())
    results["mean"], results["worst"] = float(np.mean(accs)), min(accs)
    print(f"combined: mean {results['mean']:.4f}, worst {results['worst']:.4f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
