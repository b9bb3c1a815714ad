"""Leave-one-speaker-out on FSDD with the bundled recipe taught by a model that knows voices.

The ``speech-embedding`` recipe (the audioseq-speech-embedding plugin: a network pretrained on
many speakers) scores about 8 points higher on unseen speakers than the bundled MFCC recipe,
and runs 14x slower. Knowledge distillation asks whether the fast network can learn some of
that from it: for each speaker left out, a teacher of that recipe is trained on the other four
(it never hears the speaker either), then the bundled recipe is trained with, on every batch,
the teacher's answers on the same augmented clips beside the labels:

    loss = (1 - alpha) * cross-entropy(labels) + alpha * T² * KL(teacher at T || student at T)

``--alpha 0`` trains the bundled recipe alone, the baseline. Needs the
audioseq-speech-embedding plugin. ``--extra-train DIR`` adds the clips of
DIR/<label>/*.wav (the synthetic voices of scripts/synth_speech.py) to both trainings, as the
bundled recipe does; ``--teachers DIR`` keeps each fold's teacher there and reuses it.

Usage: python benchmarks/fsdd_distill.py [--speakers a,b] [--alpha 0.5] [--temperature 2]
                                         [--extra-train DIR] [--teachers DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import audioseq
import audioseq.training
from audioseq.training import Trainer, train

from fsdd_speakers import SPEAKERS, confusions, examples, make_config, with_extra

TEACHER = {"feature": "speech-embedding", "sample_rate": 8000, "cell": "gru", "hidden_size": 48, "num_layers": 1,
           "bidirectional": True, "pooling": "attention", "utterance_norm": False, "epochs": 30, "lr": 0.003,
           "seed": 0}
STUDENT = {"feature": "mfcc", "feature_params": {"n_mfcc": 13, "f_min": 100}, "sample_rate": 8000, "cell": "gru",
           "hidden_size": 56, "num_layers": 2, "bidirectional": True, "pooling": "attention",
           "augment": {"freq_mask_width": 2}, "epochs": 40, "patience": 10, "batch_size": 32, "lr": 0.003,
           "seed": 1}  # scripts/train_digits.sh digits


def distilling(teacher: audioseq.Classifier, alpha: float, temperature: float) -> type[Trainer]:
    """A Trainer whose loss adds the teacher's answers on the same clips, softened by ``temperature``."""

    class Distilling(Trainer):
        def loss(self, logits: torch.Tensor, targets: torch.Tensor, waves: list[torch.Tensor]) -> torch.Tensor:
            with torch.no_grad():
                taught = teacher.model(*teacher.frontend(waves))
            kd = F.kl_div(F.log_softmax(logits / temperature, -1), F.softmax(taught / temperature, -1),
                          reduction="batchmean") * temperature**2
            return (1 - alpha) * super().loss(logits, targets, waves) + alpha * kd

    return Distilling


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", default=",".join(SPEAKERS))
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--extra-train", type=Path, default=None)
    parser.add_argument("--teachers", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict = {"teacher_recipe": TEACHER, "student_recipe": STUDENT, "alpha": args.alpha,
                     "temperature": args.temperature, "extra_train": str(args.extra_train), "per_speaker": {}}
    for speaker in [s for s in args.speakers.split(",") if s]:
        kept = args.teachers / f"teacher-unseen-{speaker}.safetensors" if args.teachers else None
        start = time.perf_counter()
        config = make_config(STUDENT)
        test = [e for e in with_extra(examples({speaker}), args.extra_train, config) if e.split == "test"]
        if args.alpha == 0:  # the bundled recipe alone, as a baseline measured by the same code
            res = train(with_extra(examples({speaker}), args.extra_train, config), config)
            results["per_speaker"][speaker] = row = {
                "student": res.metrics["test"]["accuracy"], "student_epochs": res.metrics["epochs_run"],
                "student_seconds": time.perf_counter() - start, "confusions": confusions(res.metrics["test"])}
            print(f"unseen speaker {speaker}: alone {row['student']:.4f}; most confused {row['confusions'][:3]}",
                  flush=True)
            continue
        if kept is not None and kept.exists():
            teacher = audioseq.load(kept)
        else:
            config = make_config(TEACHER)
            teacher = train(with_extra(examples({speaker}), args.extra_train, config), config).classifier
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                teacher.save(kept)
        teacher.model.eval()
        teacher_accuracy = audioseq.evaluate(teacher, test)["accuracy"]
        trained_at = time.perf_counter()
        audioseq.training.Trainer = distilling(teacher, args.alpha, args.temperature)
        try:
            res = train(with_extra(examples({speaker}), args.extra_train, config), config)
        finally:
            audioseq.training.Trainer = Trainer
        row = {"teacher": teacher_accuracy, "student": res.metrics["test"]["accuracy"],
               "student_epochs": res.metrics["epochs_run"], "student_seconds": time.perf_counter() - trained_at,
               "confusions": confusions(res.metrics["test"])}
        results["per_speaker"][speaker] = row
        print(f"unseen speaker {speaker}: teacher {teacher_accuracy:.4f}, student {row['student']:.4f} "
              f"({time.perf_counter() - start:.0f} s); most confused {row['confusions'][:3]}", flush=True)
    scores = [row["student"] for row in results["per_speaker"].values()]
    if scores:
        results["student_mean"], results["student_worst"] = float(np.mean(scores)), min(scores)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
