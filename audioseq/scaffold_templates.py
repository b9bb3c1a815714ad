"""The files ``audioseq new-plugin`` writes, as ``string.Template`` texts keyed by kind.

Placeholders: ``$name`` (the plugin's name), ``$package`` (its import name), ``$dist`` (its
distribution name), ``$cls`` (the component's class), ``$version`` (audioseq's version),
``$summary`` and ``$usage``. docs/plugins.md shows the rendered files; a test keeps them equal.
"""

SUMMARY = {
    "cell": "The $name recurrent cell for audioseq",
    "feature": "The $name feature extractor for audioseq",
    "dataset": "The $name dataset for audioseq",
}

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["audioseq>=$version"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.audioseq]
$name = "$package"

[tool.setuptools]
packages = ["$package"]
"""

README = """\
# $dist

$summary.

## Installation

Install this plugin in the same environment as audioseq:

    pip install $dist

or, while working on it, from this folder:

    pip install -e '.[test]'

Check that audioseq sees it; this also lists its parameters with their types and defaults:

    audioseq plugins

## Usage

$usage

## Development

The tests check the component against audioseq's contracts with `audioseq.testing`:

    pytest

To publish a release on PyPI, raise `version` in `pyproject.toml`, then:

    python -m pip install build twine
    python -m build
    python -m twine upload dist/*
"""

USAGE = {
    "cell": """\
Train a classifier with the `$name` cell; `--cell-opt` sets its parameters:

    audioseq train --dataset synthetic --cell $name --cell-opt forget_bias=2.0 --out model.safetensors""",
    "feature": """\
Train a classifier on `$name` frames; `--feature-opt` sets its parameters:

    audioseq train --dataset synthetic --features $name --feature-opt hop_ms=5 --out model.safetensors""",
    "dataset": """\
Put the clips in one folder, named `<label>_<group>_<anything>.wav` (e.g. `7_jackson_0.wav`),
and train on them; `--dataset-opt` sets the parameters:

    audioseq train --dataset $name --data clips/ --dataset-opt group_field=none --out model.safetensors

The group (the second field, e.g. the speaker) keeps all of its clips on one side of the
validation split; `group_field=none` turns that off.""",
}

MODULE = {
    "cell": '''\
"""$summary.

A cell is one time step; audioseq unrolls it over the frames of a clip, stacks it in layers and
runs it in both directions.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from audioseq import hookimpl
from audioseq.hookspecs import Register


class $cls(nn.Module):
    """A one-gate recurrent cell: a GRU without its reset gate.

    f_t = σ(W_f x_t + U_f h_{t-1} + b_f); n_t = act(W_n x_t + U_n h_{t-1} + b_n);
    h_t = f_t ⊙ h_{t-1} + (1 − f_t) ⊙ n_t. A forget gate near 1 keeps the memory, as in an LSTM.

    Args:
        forget_bias: initial bias of the forget gate; above 0 the cell starts out remembering.
        activation: nonlinearity of the candidate state, ``tanh`` or ``softsign``.
    """

    gate_names = ("forget", "candidate")
    # What the app shows beside each gate's activations (Markdown, $$...$$ for math).
    gate_meanings = {
        "forget": "$$f_t$$: how much of $$h_{t-1}$$ is kept instead of the candidate (1: all of it)",
        "candidate": "$$n_t$$: the new state proposed from $$x_t$$ and $$h_{t-1}$$",
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        forget_bias: float = 1.0,
        activation: Literal["tanh", "softsign"] = "tanh",
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.activation = activation
        # Both gates' weights in one matrix each: two matmuls per step instead of four.
        self.input_weights = nn.Linear(input_size, 2 * hidden_size)
        self.hidden_weights = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        with torch.no_grad():
            self.input_weights.bias[:hidden_size].fill_(forget_bias)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """The state before the first frame: zeros (B, H)."""
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def forward_gates(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """One step that also returns the gate activations (B, H), which the app plots."""
        forget_pre, candidate_pre = (self.input_weights(x_t) + self.hidden_weights(state)).chunk(2, dim=-1)
        forget = torch.sigmoid(forget_pre)
        candidate = torch.tanh(candidate_pre) if self.activation == "tanh" else F.softsign(candidate_pre)
        h = forget * state + (1 - forget) * candidate
        return h, h, {"forget": forget, "candidate": candidate}

    def forward(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One step: x_t (B, I), state (B, H) → output h_t (B, H) and the new state."""
        h, new_state, _ = self.forward_gates(x_t, state)
        return h, new_state


@hookimpl
def register_cells(register: Register) -> None:
    register("$name", $cls)
''',
    "feature": '''\
"""$summary.

Two values per frame: the log energy (how loud) and the zero-crossing rate (how noisy or
high-pitched).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from audioseq import hookimpl
from audioseq.hookspecs import Register


class $cls(nn.Module):
    """Log energy and zero-crossing rate per frame, (B, N) → (B, T, 2).

    Frame t covers samples [t·hop, t·hop + win) with no padding, so ``num_frames`` is exact
    and a clip's frames do not depend on the padding that batching adds after it.

    Args:
        win_ms: frame length in milliseconds.
        hop_ms: hop between frames in milliseconds.
        log_floor: smallest mean energy before the logarithm, so silence stays finite.
    """

    dim = 2

    def __init__(
        self, sample_rate: int, win_ms: float = 25.0, hop_ms: float = 10.0, log_floor: float = 1e-8
    ) -> None:
        super().__init__()
        if min(sample_rate, win_ms, hop_ms, log_floor) <= 0:
            raise ValueError("$name: sample_rate, win_ms, hop_ms and log_floor must be positive")
        self.sample_rate = sample_rate
        # Given in milliseconds so that the feature means the same at every sample rate.
        self.win_length = max(2, round(sample_rate * win_ms / 1000))
        self.hop_length = max(1, round(sample_rate * hop_ms / 1000))
        self.log_floor = log_floor

    @property
    def min_samples(self) -> int:
        """Samples needed for one frame."""
        return self.win_length

    def num_frames(self, num_samples: Tensor) -> Tensor:
        """Exact frame count for clips of ``num_samples`` samples (LongTensor, any shape)."""
        n = torch.as_tensor(num_samples, dtype=torch.long)
        full = (n - self.win_length) // self.hop_length + 1
        return torch.where(n >= self.win_length, full, torch.zeros_like(n))

    def forward(self, waveform: Tensor) -> Tensor:
        """waveform (B, N) → frames (B, T, 2): log energy, zero-crossing rate."""
        if waveform.shape[-1] < self.win_length:  # unfold refuses a window longer than the clip
            return waveform.new_zeros(*waveform.shape[:-1], 0, self.dim)
        frames = waveform.unfold(-1, self.win_length, self.hop_length)  # (B, T, win)
        energy = torch.log(frames.pow(2).mean(-1).clamp(min=self.log_floor))
        negative = frames < 0
        crossings = (negative[..., 1:] != negative[..., :-1]).to(frames.dtype).mean(-1)
        return torch.stack([energy, crossings], dim=-1)


@hookimpl
def register_features(register: Register) -> None:
    register("$name", $cls)
''',
    "dataset": '''\
"""$summary.

Clips in one folder, labelled by their file names, e.g. ``7_jackson_0.wav`` is a "7" said by
jackson.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from audioseq import Example, hookimpl
from audioseq.hookspecs import Register
from audioseq.suffixes import AUDIO_SUFFIXES


class $cls:
    """Clips in one folder named ``<label>_<group>_<anything>``; the label is the first field.

    The group (e.g. the speaker) keeps all of its clips on one side of the validation split,
    so validation measures how well the model does on speakers it never heard.

    Args:
        separator: what separates the fields of a file name.
        group_field: index of the field naming the group; None for no groups.
        recursive: also read clips in subfolders.
    """

    def __init__(
        self, root: str | None, separator: str = "_", group_field: int | None = 1, recursive: bool = False
    ) -> None:
        if root is None:
            raise ValueError("dataset '$name' needs a folder of clips (--data PATH)")
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset '$name': {folder} is not a folder")
        if not separator:
            raise ValueError("dataset '$name': separator must not be empty")
        examples = []
        for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            fields = path.stem.split(separator)
            has_group = group_field is not None and 0 < group_field < len(fields)
            group = fields[group_field] if has_group else None
            examples.append(Example(str(path), fields[0], None, group))
        if not examples:
            raise ValueError(f"dataset '$name': no audio files in {folder}")
        self._examples = examples
        self.labels = sorted({ex.label for ex in examples})

    def examples(self, split: str | None = None) -> Sequence[Example]:
        """All clips for ``split=None``; the folder has no splits, so none for a named split."""
        return list(self._examples) if split is None else []


@hookimpl
def register_datasets(register: Register) -> None:
    register("$name", $cls)
''',
}

TESTS = {
    "cell": '''\
"""The ``$name`` cell against audioseq's cell contract, and its parameters."""

import pytest
import torch

import audioseq
from audioseq.testing import check_cell

from $package import $cls


@pytest.mark.parametrize("activation", ["tanh", "softsign"])
def test_contract(activation: str) -> None:
    check_cell($cls, activation=activation)


def test_large_forget_bias_keeps_the_state() -> None:
    cell = $cls(3, 4, forget_bias=30.0)
    state = torch.ones(2, 4)
    h, _ = cell(torch.randn(2, 3), state)
    assert torch.allclose(h, state, atol=1e-5)


def test_registered_with_typed_parameters() -> None:
    # Fails until the package is installed (pip install -e .): the entry point registers it.
    assert "$name" in audioseq.list_cells()
    params = {p["name"]: p for p in audioseq.component_params("cell", "$name")}
    assert params["forget_bias"]["type"] == "float"
    assert params["activation"]["choices"] == ["tanh", "softsign"]
''',
    "feature": '''\
"""The ``$name`` feature against audioseq's feature contract, and what it measures."""

import math

import pytest
import torch

import audioseq
from audioseq.testing import check_feature

from $package import $cls


@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_contract(sample_rate: int) -> None:
    check_feature($cls, sample_rate=sample_rate, hop_ms=5.0)


def test_loudness_and_crossings() -> None:
    t = torch.arange(1600) / 8000
    low_tone = torch.sin(2 * math.pi * 100 * t)
    high_tone = 0.1 * torch.sin(2 * math.pi * 2000 * t)
    frames = $cls(8000)(torch.stack([low_tone, high_tone]))  # (2, T, 2)
    energy, crossings = frames[..., 0].mean(1), frames[..., 1].mean(1)
    assert energy[0] > energy[1]
    assert crossings[1] > crossings[0]


def test_registered_with_typed_parameters() -> None:
    # Fails until the package is installed (pip install -e .): the entry point registers it.
    assert "$name" in audioseq.list_features()
    params = {p["name"]: p for p in audioseq.component_params("feature", "$name")}
    assert params["hop_ms"]["type"] == "float"
    assert params["hop_ms"]["default"] == 10.0
''',
    "dataset": '''\
"""The ``$name`` dataset against audioseq's dataset contract, on clips written here."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import audioseq
from audioseq.testing import check_dataset

from $package import $cls


def write_clips(folder: Path) -> None:
    tone = 0.5 * np.sin(np.arange(1600) * 0.3).astype(np.float32)
    for label in ("no", "yes"):
        for speaker in ("ann", "bob"):
            for take in range(2):
                sf.write(folder / f"{label}_{speaker}_{take}.wav", tone, 8000)


def test_contract(tmp_path: Path) -> None:
    write_clips(tmp_path)
    check_dataset($cls, str(tmp_path))


def test_labels_and_groups_from_file_names(tmp_path: Path) -> None:
    write_clips(tmp_path)
    dataset = $cls(str(tmp_path))
    assert dataset.labels == ["no", "yes"]
    assert {ex.group for ex in dataset.examples()} == {"ann", "bob"}
    assert {ex.group for ex in $cls(str(tmp_path), group_field=None).examples()} == {None}


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        $cls(str(tmp_path / "missing"))


def test_registered_with_typed_parameters() -> None:
    # Fails until the package is installed (pip install -e .): the entry point registers it.
    assert "$name" in audioseq.list_datasets()
    params = {p["name"]: p for p in audioseq.component_params("dataset", "$name")}
    assert params["group_field"]["type"] == "int | None"
''',
}
