"""Built-in datasets: ``folder``, ``manifest`` and ``synthetic``."""

from __future__ import annotations

import collections
import csv
import math
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset import SPLITS, Example
from ..hookspecs import hookimpl
from ..suffixes import AUDIO_SUFFIXES, hidden, sort_files


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
    """Clips in one folder per label, ``root/<label>/``, optionally in train/, valid/ and test/.

    Each label folder is searched at any depth for ``audioseq.suffixes.AUDIO_SUFFIXES``
    (``.wav``, ``.flac``, ``.ogg``, ``.mp3``, ...); hidden files and ``__MACOSX`` folders are left out.

    When ``root`` holds ``train/``, ``valid/`` and/or ``test/`` folders, each is read the same
    way and gives that split. What is left out besides — files of other types, label folders
    without audio, files beside the label folders — is named in one warning.

    Args:
        group_pattern: a regular expression searched in each clip's path below its label folder
            (``/`` between folders) whose first group, or else whole match, names the clip's group,
            e.g. its speaker: ``^[^/]+(?=/)`` for ``<label>/<speaker>/clip.wav``, ``_([a-z]+)_`` for
            ``7_anna_3.wav``. Validation then holds whole groups out. Clips it does not match have none.
    """

    def __init__(self, root: str | None, group_pattern: str | None = None) -> None:
        self.root = _need_root(root, "folder")
        try:
            pattern = re.compile(group_pattern) if group_pattern else None
        except re.error as exc:
            raise ValueError(
                f"dataset 'folder': group_pattern {group_pattern!r} is not a regular expression: {exc}") from exc
        split_dirs = [s for s in SPLITS if (self.root / s).is_dir()]
        items: list[Example] = []
        left_out: dict[str, list[str]] = collections.defaultdict(list)
        for split in split_dirs or [None]:
            base = self.root / split if split else self.root
            for entry in sorted(base.iterdir()):
                if hidden(Path(entry.name)):
                    continue
                if not entry.is_dir():
                    left_out["files beside the label folders"].append(str(entry))
                    continue
                found, other, unlisted = sort_files(entry)
                items += [Example(str(f), entry.name, split, _group(pattern, f.relative_to(entry))) for f in found]
                if not found and not unlisted:
                    left_out["label folders without audio files"].append(str(entry))
                left_out["files of other types"] += map(str, other)
                left_out["folders that cannot be listed"] += map(str, unlisted)
        for entry in sorted(self.root.iterdir()) if split_dirs else []:
            if entry.name not in SPLITS and not hidden(Path(entry.name)):
                left_out["entries beside train/, valid/ and test/"].append(str(entry))
        if not items:
            raise ValueError(f"dataset 'folder': no audio files under {self.root}/<label>/")
        if left_out := {what: paths for what, paths in left_out.items() if paths}:
            warnings.warn("dataset 'folder' left out " + "; ".join(
                f"{len(paths)} {what} (e.g. {paths[0]})" for what, paths in left_out.items()
            ) + f"; it reads {', '.join(sorted(AUDIO_SUFFIXES))} in {self.root}/[split/]<label>/", stacklevel=2)
        self._items = items
        self.labels = sorted({ex.label for ex in items})

    def examples(self, split: str | None = None) -> Sequence[Example]:
        return _split_of(self._items, split)


def _group(pattern: re.Pattern[str] | None, relative: Path) -> str | None:
    """The group a folder dataset's pattern finds in a clip's path below its label folder."""
    found = pattern.search(relative.as_posix()) if pattern else None
    if found is None:
        return None
    return (found.group(1) if pattern.groups else found.group(0)) or None


class ManifestDataset:
    """A CSV with columns ``path,label`` and optional ``split`` and ``group``.

    Relative paths resolve against the CSV's folder. ``root`` is the CSV file. Column names are
    matched without regard to case; a spreadsheet's byte-order mark and a ``;`` or tab
    delimiter are understood. A path listed twice with different labels, or in training and
    test alike, is named in a warning; a manifest none of whose files exist is refused.
    """

    def __init__(self, root: str | None) -> None:
        path = _need_root(root, "manifest")
        items: list[Example] = []
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM
                head = fh.read(4096)
                fh.seek(0)
                try:
                    dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(head, delimiters=",;\t")
                except csv.Error:
                    dialect = csv.excel
                reader = csv.DictReader(fh, dialect=dialect)
                columns = {name.strip().lower(): name for name in reader.fieldnames or []}
                if not {"path", "label"} <= set(columns):
                    raise ValueError(f"manifest {path}: needs columns path,label (has {', '.join(sorted(columns))})")
                column = lambda row, name: (row.get(columns.get(name, name)) or "").strip()  # noqa: E731
                for line, row in enumerate(reader, start=2):
                    clip, label = column(row, "path"), column(row, "label")
                    if not clip or not label:
                        raise ValueError(f"manifest {path}, line {line}: empty path or label")
                    split = column(row, "split") or None
                    if split is not None and split not in SPLITS:
                        raise ValueError(f"manifest {path}, line {line}: split {split!r} is not one of {SPLITS}")
                    full = Path(clip) if os.path.isabs(clip) else path.parent / clip
                    items.append(Example(str(full), label, split, column(row, "group") or None))
        except (csv.Error, UnicodeDecodeError) as exc:  # a field over csv's limit, a file in another encoding
            raise ValueError(f"manifest {path}: not a readable UTF-8 CSV ({type(exc).__name__}: {exc})") from None
        if not items:
            raise ValueError(f"manifest {path} lists no clips")
        if not any(os.path.lexists(ex.audio) for ex in items):  # type: ignore[arg-type]
            raise FileNotFoundError(
                f"manifest {path}: none of its {len(items)} files exists, e.g. {items[0].audio}; relative paths "
                f"resolve against the manifest's folder, {path.parent}")
        _warn_of_conflicts(path, items)
        self._items = items
        self.labels = sorted({ex.label for ex in items})

    def examples(self, split: str | None = None) -> Sequence[Example]:
        return _split_of(self._items, split)


def _warn_of_conflicts(path: Path, items: list[Example]) -> None:
    """Name the files a manifest lists with two labels, or for training and for testing."""
    labels, splits = collections.defaultdict(set), collections.defaultdict(set)
    for ex in items:
        where = os.path.realpath(ex.audio)  # type: ignore[arg-type]
        labels[where].add(ex.label)
        splits[where].add("test" if ex.split == "test" else "train")
    problems = [f"{len(found)} {what} (e.g. {found[0]})" for what, found in (
        ("files listed with different labels", [f for f, ls in labels.items() if len(ls) > 1]),
        ("files listed for training and for testing", [f for f, ss in splits.items() if len(ss) > 1]),
    ) if found]
    if problems:
        warnings.warn(f"manifest {path}: " + "; ".join(problems), stacklevel=3)


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
