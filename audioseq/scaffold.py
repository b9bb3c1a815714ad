"""``audioseq new-plugin``: a ready-to-install plugin package with a working component.

The generated package is the smallest complete plugin: a pyproject with the ``audioseq``
entry point, one module registering a cell, feature or dataset through its hook, tests built on
``audioseq.testing`` and a README. docs/plugins.md shows these files verbatim; a test keeps the
two identical. Nothing here imports torch, so ``audioseq --help`` stays quick.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from string import Template

import click

from .errors import AudioseqError

KINDS = ("cell", "feature", "dataset")
# Lower case so the distribution, module and entry-point names agree; a leading letter so the
# derived class name is an identifier.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


class ScaffoldError(AudioseqError):
    """A plugin name that is not allowed or already taken, or a folder that exists or cannot be made."""


def check_name(name: str) -> str:
    """Return ``name`` if it can name a plugin (``my-cell2``), else raise ``ScaffoldError``."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(
            f"plugin name {name!r} is not allowed: use lowercase letters, digits and single "
            "hyphens, starting with a letter (e.g. 'my-cell')"
        )
    return name


def package_name(name: str) -> str:
    """The import name of plugin ``name``: ``my-cell`` → ``audioseq_my_cell``."""
    return "audioseq_" + name.replace("-", "_")


def class_name(name: str, kind: str) -> str:
    """The example class of plugin ``name``: ``my-cell``, ``cell`` → ``MyCellCell``."""
    return "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()


def scaffold_plugin(name: str, kind: str, dest: Path) -> Path:
    """Create ``dest/audioseq-<name>/`` holding a plugin with a working ``kind`` and its tests.

    Raises ``ScaffoldError`` for a bad name or kind, an existing folder, a name that an
    installed plugin already registers for ``kind`` (two components of one name stop every
    plugin from loading), or a folder that cannot be written. Returns the new folder.
    """
    check_name(name)
    if kind not in KINDS:
        raise ScaffoldError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    dest = Path(dest)
    target = dest / f"audioseq-{name}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another name or --dir, or remove it")
    from .plugins import get_component, list_components

    if name in list_components(kind):  # type: ignore[arg-type]
        owner = get_component(kind, name).plugin  # type: ignore[arg-type]
        raise ScaffoldError(f"{kind} {name!r} is already registered by plugin {owner!r}; choose another name")
    files = render(name, kind)
    # Written beside the target and renamed into place, so a failure leaves no half-made
    # folder that would block the next attempt.
    staging = dest / f".audioseq-{name}-{secrets.token_hex(4)}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.rename(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ScaffoldError(f"cannot create {target}: {exc}") from exc
        raise
    return target


def render(name: str, kind: str) -> dict[str, str]:
    """The files of plugin ``name`` of ``kind``, by path relative to the package folder."""
    from . import __version__

    package = package_name(name)
    values = {
        "name": name,
        "package": package,
        "dist": f"audioseq-{name}",
        "cls": class_name(name, kind),
        "version": __version__,
        "summary": Template(_SUMMARY[kind]).substitute(name=name),
    }
    values["usage"] = Template(_USAGE[kind]).substitute(values)
    return {
        "pyproject.toml": Template(_PYPROJECT).substitute(values),
        "README.md": Template(_README).substitute(values),
        f"{package}/__init__.py": Template(_MODULE[kind]).substitute(values),
        f"tests/test_{name.replace('-', '_')}.py": Template(_TESTS[kind]).substitute(values),
    }


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default="cell", show_default=True, help="What the plugin adds.")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="Folder in which to create audioseq-NAME/.",
)
def new_plugin(name: str, kind: str, directory: Path) -> None:
    """Create audioseq-NAME/: a plugin package with a working KIND, tests and a README."""
    try:
        check_name(name)
    except ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    try:
        target = scaffold_plugin(name, kind, directory)
    except AudioseqError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    click.echo(f"Created {target} with the {kind} {name!r}. Next:")
    click.echo(f"  cd {target}\n  pip install -e '.[test]'\n  pytest\n  audioseq plugins")


_SUMMARY = {
    "cell": "The $name recurrent cell for audioseq",
    "feature": "The $name feature extractor for audioseq",
    "dataset": "The $name dataset for audioseq",
}

_PYPROJECT = """\
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

_README = """\
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

_USAGE = {
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

_MODULE = {
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

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


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

_TESTS = {
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
