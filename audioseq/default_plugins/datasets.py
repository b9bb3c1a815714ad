"""Built-in datasets: ``folder``, ``manifest`` and ``synthetic``."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import SPLITS, Example
from ..hookspecs import hookimpl
from ..suffixes import AUDIO_SUFFIXES


def _need_root(root: str | None, name: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (--data PATH)")
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset {name!r}: {path} does not exist")
    return path


def _split_of(items: list[Example], split: str | None) -> list[Example]:
    if split is None:
        return list(items)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return [ex for ex in items if ex.split == split]


class FolderDataset:
    """Clips in one folder per label: ``root/<label>/*.wav|flac|ogg|mp3|...`` (searched recursively;
    the suffixes are ``audioseq.suffixes.AUDIO_SUFFIXES``).

    When ``root`` holds ``train/``, ``valid/`` and/or ``test/`` folders, each is read the same
    way and gives that split.
    """

    def __init__(self, root: str | None) -> None:
        self.root = _need_root(root, "folder")
        split_dirs = [s for s in SPLITS if (self.root / s).is_dir()]
        items: list[Example] = []
        for split in split_dirs or [None]:
            base = self.root / split if split else self.root
            for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for f in sorted(label_dir.rglob("*")):
                    if f.suffix.lower() in AUDIO_SUFFIXES and not f.is_dir():  # a broken link: reported unreadable
                        items.append(Example(str(f), label_dir.name, split))
        if not items:
            raise ValueError(f"dataset 'folder': no audio files under {self.root}/<label>/")
        self._items = items
        self.labels = sorted({ex.label for ex in items})

    def examples(self, split: str | None = None) -> Sequence[Example]:
        return _split_of(self._items, split)


class ManifestDataset:
    """A CSV with columns ``path,label`` and optional ``split`` and ``group``.

    Relative paths resolve against the CSV's folder. ``root`` is the CSV file.
    """

    def __init__(self, root: str | None) -> None:
        path = _need_root(root, "manifest")
        items: list[Example] = []
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or [])
            if not {"path", "label"} <= fields:
                raise ValueError(f"manifest {path}: needs columns path,label (has {', '.join(sorted(fields))})")
            for line, row in enumerate(reader, start=2):
                clip, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
                if not clip or not label:
                    raise ValueError(f"manifest {path}, line {line}: empty path or label")
                split = (row.get("split") or "").strip() or None
                if split is not None and split not in SPLITS:
                    raise ValueError(f"manifest {path}, line {line}: split {split!r} is not one of {SPLITS}")
                full = Path(clip) if os.path.isabs(clip) else path.parent / clip
                items.append(Example(str(full), label, split, (row.get("group") or "").strip() or None))
        if not items:
            raise ValueError(f"manifest {path} lists no clips")
        self._items = items
        self.labels = sorted({ex.label for ex in items})

    def examples(self, split: str | None = None) -> Sequence[Example]:
        return _split_of(self._items, split)


SYNTHETIC_CLASSES = ("tone", "chirp-up", "chirp-down", "noise-burst", "pulse-train")


class SyntheticDataset:
    """Deterministic generated clips of five sound classes; needs no files.

    Classes: a steady tone, an up chirp, a down chirp, a band of noise bursts and a pulse
    train, each with random pitch, timing, gain and background noise. Examples ``i % 10`` of
    7-8 are ``valid`` and 9 are ``test``.

    Args:
        per_class: clips per class.
        sample_rate: sample rate in Hz.
        min_seconds: shortest clip.
        max_seconds: longest clip.
        noise: background noise level relative to the signal (0: clean).
        seed: random seed; the same seed gives the same clips.
    """

    def __init__(
        self,
        root: str | None = None,
        per_class: int = 40,
        sample_rate: int = 8000,
        min_seconds: float = 0.3,
        max_seconds: float = 1.0,
        noise: float = 0.05,
        seed: int = 0,
    ) -> None:
        if per_class < 1 or not 0 < min_seconds <= max_seconds:
            raise ValueError("synthetic: per_class ≥ 1 and 0 < min_seconds ≤ max_seconds are required")
        self.labels = sorted(SYNTHETIC_CLASSES)
        rng = np.random.default_rng(seed)
        items = []
        for i in range(per_class):
            for label in SYNTHETIC_CLASSES:
                n = int(rng.uniform(min_seconds, max_seconds) * sample_rate)
                wave = _synth(label, n, sample_rate, rng) * rng.uniform(0.2, 0.9)
                wave = wave + noise * 0.3 * rng.standard_normal(n)
                split = "test" if i % 10 == 9 else "valid" if i % 10 in (7, 8) else "train"
                items.append(Example((wave.astype(np.float32), sample_rate), label, split, None))
        self._items = items

    def examples(self, split: str | None = None) -> Sequence[Example]:
        return _split_of(self._items, split)


def _synth(label: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    nyq = sr / 2
    if label == "tone":
        return np.sin(2 * math.pi * rng.uniform(200, 0.4 * nyq) * t)
    if label in ("chirp-up", "chirp-down"):
        lo, hi = rng.uniform(150, 0.15 * nyq), rng.uniform(0.5 * nyq, 0.8 * nyq)
        f0, f1 = (lo, hi) if label == "chirp-up" else (hi, lo)
        freq = f0 + (f1 - f0) * t / max(t[-1], 1e-9)
        return np.sin(2 * math.pi * np.cumsum(freq) / sr)
    if label == "noise-burst":
        wave = np.zeros(n)
        burst = max(1, int(rng.uniform(0.03, 0.08) * sr))
        for _ in range(int(rng.integers(2, 5))):
            start = int(rng.integers(0, max(1, n - burst)))
            wave[start : start + burst] += rng.standard_normal(min(burst, n - start))
        return wave / max(np.abs(wave).max(), 1e-9)
    if label == "pulse-train":
        period = max(2, int(sr / rng.uniform(8, 30)))
        wave = np.zeros(n)
        wave[int(rng.integers(0, period)) :: period] = 1.0
        return np.convolve(wave, np.hanning(max(3, sr // 500)), mode="same")
    raise ValueError(label)


@hookimpl
def register_datasets(register) -> None:
    register("folder", FolderDataset)
    register("manifest", ManifestDataset)
    register("synthetic", SyntheticDataset)
