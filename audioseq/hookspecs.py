"""The hooks a plugin implements. Each receives a ``register(name, factory)`` callback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("audioseq")
hookimpl = HookimplMarker("audioseq")

Register = Callable[[str, Callable[..., Any]], None]
RegisterModel = Callable[[str, "str | os.PathLike[str]"], None]


def register_model_files(register: RegisterModel, folder: str | os.PathLike[str]) -> None:
    """Register every ``NAME.safetensors`` in ``folder`` as the model ``NAME``, in name order."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        register(path.stem, path)


@hookspec
def register_cells(register: Register) -> None:
    """Register recurrent cells: ``factory(input_size: int, hidden_size: int, **params) -> nn.Module``.

    The module provides ``initial_state(batch_size, device, dtype)`` returning the state (a
    tensor or a tuple of tensors, batch first) and
    ``forward(x_t: (B, I), state) -> (h_t: (B, H), new_state)``. Optionally:
    ``forward_gates(x_t, state) -> (h_t, new_state, gates)`` with ``gate_names`` to expose gate
    activations (B, H) and ``gate_meanings`` (name → one line of Markdown) to explain them, and
    a whole-sequence fast path
    ``forward_sequence(x: (B, T, I), lengths: (B,), state, need_state=True) -> (outputs: (B, T, H), final_state)``
    equal to unrolling (with ``need_state=False`` the final state may be None: the encoder
    reads only the outputs), and ``onnx_recurrence() -> audioseq.export.OnnxRecurrence | None`` to
    run on ONNX Runtime (None: no ONNX form with this cell's parameters; torch runs it). Its state_dict must hold only floating-point tensors.
    Check a cell with ``audioseq.testing.check_cell``.
    """


@hookspec
def register_features(register: Register) -> None:
    """Register feature extractors: ``factory(sample_rate: int, **params) -> nn.Module``.

    The module has ``dim: int``, ``num_frames(num_samples: LongTensor) -> LongTensor`` and
    ``forward(waveform: (B, N)) -> frames: (B, T, dim)``. Prediction may call ``forward`` from
    two threads at once, so it must not change the module's state. Optionally
    ``frame_seconds(num_frames: int) -> (T,)``: each frame's centre in seconds from the clip's
    start, for the time axes of ``Classifier.inspect`` and the app (without it they come from
    ``hop_length`` and ``n_fft`` attributes, else frames are taken as evenly spread).
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``factory(root: str | None, **params)``.

    The object has ``labels: list[str]`` and ``examples(split=None) -> Sequence[Example]``.
    """


@hookspec
def register_models(register: RegisterModel) -> None:
    """Register ready-trained models: ``register(name, path)``, a ``.safetensors`` model file.

    Ship the file inside the plugin's package (package data) with its model card as
    ``NAME.md`` beside it; ``audioseq.load(name)`` then opens it like any model file (the
    features and cells it names must be registered), ``audioseq plugins`` lists it with the
    first sentence of its card, and the app offers it. A path that is not a file makes the
    hook fail (the plugin is reported broken); a name registered twice is an error naming
    both plugins.
    """
