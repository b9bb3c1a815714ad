"""How well a training recipe generalises on FSDD: official split, unseen speakers, browser-like clips.

- official: train on recording index 5-49, test on 0-4 (all speakers seen in training).
- leave-one-speaker-out: for each speaker, train on the others and test on all of theirs.
- browser-like: the official test clips resampled to 48 kHz with 0.3-1 s of quiet noise
  (30 dB below the speech level) before and after, at a random gain — how a browser
  recording of the same words looks.
- higher voice: the official test clips played 1.2x faster (pitch and formants 1.2x higher,
  0.83x as long), a rough stand-in for a smaller vocal tract than the five adult men's. The
  training augmentation's speed perturbation stops at 1.1x.
- recording conditions: the official test clips with white noise at 20 and 10 dB below the
  clip's RMS level, in a synthetic room (RT60 0.3 and 0.6 s; the reverberation the training
  augmentation can add, off by default), and played 0.85x as fast (a lower voice).

Usage: python benchmarks/fsdd_speakers.py [--recipe JSON] [--speakers a,b] [--out results.json]
                                          [--extra-train DIR] [--save-models DIR]
The recipe is TrainConfig keyword arguments as JSON (default: the defaults). Validation clips
come from every training speaker, as in scripts/train_digits.sh; --group-validation holds
one training speaker out for validation instead. --extra-train adds the clips of
DIR/<label>/*.wav (synthetic voices from scripts/synth_speech.py) to every training set, never
to validation or test.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

import audioseq

from audioseq.audio import resample
from audioseq.augment import Augment, reverberate, room_impulse
from audioseq.dataset import Example, stratified_split
from audioseq.evaluation import evaluate
from audioseq.preprocess import Preprocess
from audioseq.training import TrainConfig, train

from common import FSDD, fsdd_files

NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")


def examples(test_speakers: set[str] | None = None, groups: bool = False) -> list[Example]:
    """FSDD examples; with ``groups`` the speaker is the group, so validation holds a speaker out."""
    out = []
    for f in fsdd_files():
        digit, speaker, index = NAME.search(f).groups()
        test = speaker in test_speakers if test_speakers else int(index) < 5
        out.append(Example(f, digit, "test" if test else "train", speaker if groups else None))
    return out


def with_extra(exs: list[Example], extra: Path | None, config: TrainConfig) -> list[Example]:
    """The recordings with validation drawn as training would draw it, plus the clips of the
    folder ``extra`` (read as the ``folder`` dataset reads ``LABEL/`` folders) for training only."""
    if extra is None:
        return exs
    recorded = [e for e in exs if e.split == "train"]
    train_ex, valid = stratified_split(recorded, config.valid_fraction, config.seed, by_group=True)
    valid = [Example(e.audio, e.label, "valid", e.group) for e in valid]
    clips = [Example(e.audio, e.label, "train") for e in audioseq.load_dataset("folder", str(extra)).examples()]
    return train_ex + valid + [e for e in exs if e.split == "test"] + clips


def _read(ex: Example) -> tuple[np.ndarray, int]:
    import soundfile as sf

    return sf.read(ex.audio, dtype="float32")


def browser_like(exs: list[Example], seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for ex in exs:
        wave, sr = _read(ex)
        wave48 = resample(torch.from_numpy(wave), sr, 48000).numpy()
        rms = max(float(np.sqrt(np.mean(wave48**2))), 1e-4)
        pads = [int(rng.uniform(0.3, 1.0) * 48000) for _ in range(2)]
        noise = rng.standard_normal(pads[0] + len(wave48) + pads[1]).astype(np.float32) * rms * 10 ** (-30 / 20)
        noise[pads[0] : pads[0] + len(wave48)] += wave48
        out.append(Example((noise * rng.uniform(0.3, 2.0), 48000), ex.label, ex.split, ex.group))
    return out


def higher_voice(exs: list[Example], factor: float = 1.2) -> list[Example]:
    """Each clip played ``factor`` times faster: resampled to rate/factor, read at the rate."""
    out = []
    for ex in exs:
        wave, sr = _read(ex)
        out.append(Example((resample(torch.from_numpy(wave), sr, round(sr / factor)).numpy(), sr), ex.label, ex.split, ex.group))
    return out


def noisy(exs: list[Example], snr_db: float, seed: int = 0) -> list[Example]:
    """White noise over each whole clip, ``snr_db`` below the clip's RMS level."""
    rng = np.random.default_rng(seed)
    out = []
    for ex in exs:
        wave, sr = _read(ex)
        rms = float(np.sqrt(np.mean(wave**2)))
        noise = rng.standard_normal(wave.size).astype(np.float32) * rms * 10 ** (-snr_db / 20)
        out.append(Example((wave + noise, sr), ex.label, ex.split, ex.group))
    return out


def in_a_room(exs: list[Example], rt60: float, seed: int = 0) -> list[Example]:
    """Each clip convolved with a synthetic room impulse response of reverberation time ``rt60`` s."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for ex in exs:
        wave, sr = _read(ex)
        wet = reverberate(torch.from_numpy(wave), room_impulse(rt60, sr, g))
        out.append(Example((wet.numpy(), sr), ex.label, ex.split, ex.group))
    return out


# name -> (view of the test clips for a seed, seeds to draw): the random views are drawn 3 times.
CONDITIONS = {
    "noise_20db": (lambda exs, seed: noisy(exs, 20, seed), (0, 1, 2)),
    "noise_10db": (lambda exs, seed: noisy(exs, 10, seed), (0, 1, 2)),
    "room_rt60_0.3s": (lambda exs, seed: in_a_room(exs, 0.3, seed), (0, 1, 2)),
    "room_rt60_0.6s": (lambda exs, seed: in_a_room(exs, 0.6, seed), (0, 1, 2)),
    "lower_voice_0.85x": (lambda exs, seed: higher_voice(exs, 0.85), (0,)),
}


def confusions(metrics: dict, least: int = 3) -> list[str]:
    """The test's most frequent mistakes, "true→predicted ×count", at least ``least`` times each."""
    labels, matrix = metrics["labels"], np.asarray(metrics["confusion_matrix"])
    np.fill_diagonal(matrix, 0)
    pairs = sorted(((int(matrix[i, j]), labels[i], labels[j]) for i, j in zip(*np.nonzero(matrix >= least))), reverse=True)
    return [f"{t}→{p} ×{n}" for n, t, p in pairs]


def make_config(recipe: dict) -> TrainConfig:
    recipe = dict(recipe)
    if "augment" in recipe:
        recipe["augment"] = Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe["augment"].items()})
    if "preprocess" in recipe:
        recipe["preprocess"] = Preprocess(**recipe["preprocess"])
    return TrainConfig(**recipe)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="{}")
    parser.add_argument("--speakers", default=",".join(SPEAKERS))
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--group-validation", action="store_true")
    parser.add_argument("--extra-train", type=Path, default=None)
    parser.add_argument("--model", default=None, help="Score this model on the official split instead of training one.")
    parser.add_argument("--save-models", type=Path, default=None, help="Write each unseen-speaker model here.")
    args = parser.parse_args()
    recipe = json.loads(args.recipe)
    results: dict = {"recipe": recipe, "data": str(FSDD)}
    if args.extra_train:
        results["extra_train"] = str(args.extra_train)
    config = make_config(recipe)
    if not args.skip_official:
        start = time.perf_counter()
        exs = with_extra(examples(groups=args.group_validation), args.extra_train, config)
        test = [e for e in exs if e.split == "test"]
        if args.model:
            clf = audioseq.load(args.model)
            results["official"] = {"model": args.model, "test_accuracy": evaluate(clf, test)["accuracy"]}
        else:
            res = train(exs, make_config(recipe))
            clf = res.classifier
            results["official"] = {
                "test_accuracy": res.metrics["test"]["accuracy"],
                "epochs": res.metrics["epochs_run"],
                "seconds": time.perf_counter() - start,
            }
        results["official"]["browser_like_accuracy"] = evaluate(clf, browser_like(test))["accuracy"]
        results["official"]["higher_voice_accuracy"] = evaluate(clf, higher_voice(test))["accuracy"]
        results["official"]["conditions_accuracy"] = {  # one accuracy per seed drawn
            name: [evaluate(clf, view(test, seed))["accuracy"] for seed in seeds]
            for name, (view, seeds) in CONDITIONS.items()
        }
        results["official"]["parameters"] = clf.num_parameters()
        print("official", results["official"], flush=True)
    loso, mistakes = {}, {}
    for speaker in [s for s in args.speakers.split(",") if s]:
        res = train(with_extra(examples({speaker}, args.group_validation), args.extra_train, config), config)
        loso[speaker] = res.metrics["test"]["accuracy"]
        mistakes[speaker] = confusions(res.metrics["test"])
        print(f"unseen speaker {speaker}: {loso[speaker]:.4f}; most confused {mistakes[speaker][:3]}", flush=True)
        if args.save_models:
            args.save_models.mkdir(parents=True, exist_ok=True)
            res.classifier.save(args.save_models / f"unseen-{speaker}.safetensors")
    if loso:
        results["leave_one_speaker_out"] = {
            "per_speaker": loso,
            "mean": float(np.mean(list(loso.values()))),
            "worst": min(loso.values()),
            "confusions": mistakes,
        }
        print("leave-one-speaker-out", results["leave_one_speaker_out"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
