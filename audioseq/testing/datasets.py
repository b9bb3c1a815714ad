"""Contract checks for datasets, for a dataset author's own tests::

    from audioseq.testing import check_dataset

    def test_my_dataset_keeps_the_contract(tmp_path):
        check_dataset(MyDataset, str(make_fixture(tmp_path)), min_seconds=0.5)
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Callable, Hashable, NoReturn, Sequence

import numpy as np

from ..dataset import SPLITS, Example, as_array
from .contract import ContractError, checked_params, component_name


def check_dataset(factory: Callable[..., Any], root: str | None, **params: Any) -> None:
    """Check that a dataset keeps the contract training and evaluation rely on.

    Covers: declared parameters; ``labels`` a non-empty list of distinct strings; ``examples()``
    a non-empty sequence of :class:`~audioseq.Example` whose label is in ``labels``, whose split
    is train/valid/test/None and whose audio is an existing file or ``(waveform (N,) or
    (channels, N), sample_rate > 0)`` with finite samples; ``examples(split)`` the subset with
    that split, in the same order; determinism (a second construction gives the same labels in
    the same order and the same examples).

    Args:
        factory: builds the dataset, ``factory(root, **params)``.
        root: where its files are (a folder or a file), or None for a dataset that needs none.
        params: the dataset's own parameters, as a user would give them.
    Raises:
        ContractError: naming the broken property, the numbers and the fix.
    """
    checked_params(factory, 1, params, "root")
    checks = _DatasetChecks(factory, root, params)
    first = checks.inspect()
    if checks.inspect() != first:
        checks.fail("determinism", "two constructions with the same root and parameters gave different labels or "
                    "examples (or another order)", "seed every random choice and sort directory listings")


class _DatasetChecks:
    def __init__(self, factory: Callable[..., Any], root: str | None, params: dict[str, Any]) -> None:
        self.factory, self.root, self.params = factory, root, params
        self.who = component_name(factory)

    def fail(self, check: str, detail: str, fix: str) -> NoReturn:
        raise ContractError(self.who, check, detail, fix)

    def inspect(self) -> tuple[list[str], list[Hashable]]:
        """Build the dataset and check it; return its labels and one key per example, to compare builds."""
        try:
            dataset = self.factory(self.root, **self.params)
        except Exception as exc:
            self.fail("construction", f"factory({self.root!r}, **{self.params!r}) raised {type(exc).__name__}: {exc}",
                      "build the dataset from the root and its declared parameters")
        labels = getattr(dataset, "labels", None)
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
            self.fail("labels", f"labels is {labels!r:.200}", "set labels to a non-empty list of class names (str)")
        if len(set(labels)) != len(labels):
            self.fail("labels", f"{len(labels) - len(set(labels))} duplicate label(s)", "list each class once")
        everything = self.examples(dataset, None)
        if not everything:
            self.fail("examples", "examples() is empty", "give at least one example")
        known = set(labels)
        for index, ex in enumerate(everything):
            self.example(index, ex, known)
        keys = [self.key(ex) for ex in everything]
        for split in SPLITS:
            subset = self.examples(dataset, split)
            expected = [k for k, ex in zip(keys, everything) if ex.split == split]
            got = [self.key(ex) for ex in subset]
            if got != expected:
                self.fail("split subset", f"examples({split!r}) gave {len(got)} examples; the {split} examples of "
                          f"examples() are {len(expected)} (or in another order)",
                          "return exactly the examples whose split is that split, in the order of examples()")
        return list(labels), keys

    def examples(self, dataset: Any, split: str | None) -> Sequence[Example]:
        try:
            items = dataset.examples(split) if split is not None else dataset.examples()
        except Exception as exc:
            self.fail("examples", f"examples({split!r}) raised {type(exc).__name__}: {exc}",
                      "implement examples(split=None) -> Sequence[Example]")
        if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
            self.fail("examples", f"examples({split!r}) returned a {type(items).__name__}",
                      "return a sequence (list or tuple): training indexes it and takes its length")
        return items

    def example(self, index: int, ex: Any, known: set[str]) -> None:
        if not isinstance(ex, Example):
            self.fail("example type", f"example {index} is a {type(ex).__name__}", "return audioseq.Example objects")
        where = f"example {index} ({ex.source})"
        if ex.label not in known:
            self.fail("example label", f"{where} has label {ex.label!r}, which is not in labels",
                      "list every label the examples use in labels")
        if ex.split not in (*SPLITS, None):
            self.fail("example split", f"{where} has split {ex.split!r}", f"use one of {', '.join(SPLITS)} or None")
        if ex.group is not None and not isinstance(ex.group, str):
            self.fail("example group", f"{where} has group {ex.group!r}", "make the group a str (e.g. a speaker) or None")
        if isinstance(ex.audio, tuple):
            self.waveform(where, ex.audio)
        elif not isinstance(ex.audio, (str, os.PathLike)) or not os.path.isfile(ex.audio):
            self.fail("example audio", f"{where}: the audio is neither an existing file nor (waveform, sample_rate)",
                      "give a path to a readable file, or a (numpy or torch waveform, int sample rate) pair")

    def waveform(self, where: str, audio: tuple[Any, ...]) -> None:
        if len(audio) != 2 or not isinstance(audio[1], (int, np.integer)) or isinstance(audio[1], bool) or audio[1] <= 0:
            self.fail("example audio", f"{where}: a tuple must be (waveform, sample_rate > 0), got {len(audio)} items "
                      f"with rate {audio[-1]!r}", "give (waveform, int sample rate in Hz)")
        try:
            wave = as_array(audio[0])
        except (TypeError, ValueError) as exc:
            self.fail("example audio", f"{where}: the waveform is not numeric: {exc}", "give a numpy array or tensor")
        if wave.ndim not in (1, 2) or wave.shape[-1] == 0 or not np.isfinite(wave).all():
            self.fail("example audio", f"{where}: waveform of shape {wave.shape}, finite: {bool(np.isfinite(wave).all())}",
                      "give (N,) or (channels, N) samples, at least one, all finite")

    @staticmethod
    def key(ex: Example) -> Hashable:
        """What identifies an example across constructions; waveforms by their bytes."""
        if isinstance(ex.audio, tuple):
            wave = np.ascontiguousarray(as_array(ex.audio[0]))
            audio: Hashable = (int(ex.audio[1]), wave.shape, hashlib.sha1(wave.tobytes()).hexdigest())
        else:
            audio = os.fspath(ex.audio)
        return (audio, ex.label, ex.split, ex.group)
