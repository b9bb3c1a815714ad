"""What a dataset gives: examples with a label, an optional split and an optional group."""

from __future__ import annotations

import dataclasses
import os
import random
from collections import defaultdict
from typing import Any, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np

Audio = Union[str, "os.PathLike[str]", Tuple[Any, int]]
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Example:
    """One labelled clip.

    Attributes:
        audio: a file path, or ``(waveform, sample_rate)`` with waveform ``(N,)`` or
            ``(channels, N)`` (numpy or torch).
        label: the class name.
        split: ``"train"``, ``"valid"``, ``"test"`` or None when the dataset has no split.
        group: what must not be split across train and validation (e.g. the speaker), or None.
    """

    audio: Audio
    label: str
    split: str | None = None
    group: str | None = None

    @property
    def source(self) -> str:
        if isinstance(self.audio, tuple):
            return f"<waveform {self.label}>"
        return os.fspath(self.audio)


@runtime_checkable
class Dataset(Protocol):
    labels: list[str]

    def examples(self, split: str | None = None) -> Sequence[Example]: ...


def stratified_split(
    examples: Sequence[Example], valid_fraction: float = 0.15, seed: int = 0, by_group: bool = True
) -> tuple[list[Example], list[Example]]:
    """Split into (train, valid), stratified by label, grouped by ``group`` when present.

    With groups (and ``by_group``), whole groups go to validation (per label, so every class is validated)
    until about ``valid_fraction`` of the examples are held out; a label whose examples all
    share one group cannot be split by group and falls back to a plain stratified split.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    train: list[Example] = []
    valid: list[Example] = []
    use_groups = by_group and any(ex.group is not None for ex in examples)
    groups_all = sorted({ex.group for ex in examples if ex.group is not None})
    held_groups: set[str] = set()
    if use_groups and len(groups_all) >= 2:
        n_hold = max(1, int(round(len(groups_all) * valid_fraction)))
        held_groups = set(rng.sample(groups_all, min(n_hold, len(groups_all) - 1)))
    for label in sorted(by_label):
        items = by_label[label]
        label_groups = {ex.group for ex in items}
        if held_groups and any(g in held_groups for g in label_groups) and any(
            g not in held_groups for g in label_groups
        ):
            valid += [ex for ex in items if ex.group in held_groups]
            train += [ex for ex in items if ex.group not in held_groups]
            continue
        order = list(range(len(items)))
        rng.shuffle(order)
        n_valid = int(round(len(items) * valid_fraction))
        if len(items) >= 2:
            n_valid = min(max(n_valid, 1), len(items) - 1)
        else:
            n_valid = 0
        chosen = set(order[:n_valid])
        for i, ex in enumerate(items):
            (valid if i in chosen else train).append(ex)
    return train, valid


def as_array(waveform: Any) -> np.ndarray:
    """numpy float32 view of a numpy array or torch tensor."""
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().numpy()
    return np.asarray(waveform, dtype=np.float32)
