"""Finding and reading the speech_embedding weights: ONNX initializers, never code.

The weights are Google's speech_embedding model (Apache-2.0) as the ``openwakeword`` package
ships it up to version 0.4: ``melspectrogram.onnx`` (the log-mel front end) and
``embedding_model.onnx`` (the convolutional network). This package does not redistribute
them; it reads them where they are installed, or from the folder named by the environment
variable ``AUDIOSEQ_SPEECH_EMBEDDING_DIR``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from audioseq.errors import PluginError
from torch import Tensor

ENV = "AUDIOSEQ_SPEECH_EMBEDDING_DIR"
FILES = ("melspectrogram.onnx", "embedding_model.onnx")
INSTALL = 'pip install "openwakeword==0.4.0"'

#: The convolutions of the embedding network in order: (name, out, in, kernel over time, kernel over mel bands).
CONVS: tuple[tuple[str, int, int, int, int], ...] = (
    ("conv2d", 24, 1, 3, 3),
    *((f"conv2d_{i}", o, c, kt, kf) for i, o, c, kt, kf in (
        (1, 24, 24, 1, 3), (2, 24, 24, 3, 1), (3, 48, 24, 1, 3), (4, 48, 48, 3, 1), (5, 48, 48, 1, 3),
        (6, 48, 48, 3, 1), (7, 72, 48, 1, 3), (8, 72, 72, 3, 1), (9, 72, 72, 1, 3), (10, 72, 72, 3, 1),
        (11, 96, 72, 1, 3), (12, 96, 96, 3, 1), (13, 96, 96, 1, 3), (14, 96, 96, 3, 1), (15, 96, 96, 1, 3),
        (16, 96, 96, 3, 1), (17, 96, 96, 1, 3), (18, 96, 96, 3, 1), (19, 96, 96, 3, 1),
    )),
)


def weights_dir() -> Path:
    """The folder holding the two ONNX files.

    Raises:
        PluginError: neither ``$AUDIOSEQ_SPEECH_EMBEDDING_DIR`` nor an installed ``openwakeword``
            (≤ 0.4) holds them; the message says how to get them.
    """
    named = os.environ.get(ENV)
    if named:
        folder = Path(named)
    else:
        spec = importlib.util.find_spec("openwakeword")  # found, not imported: only its files are needed
        if spec is None or not spec.submodule_search_locations:
            raise PluginError(f"speech-embedding needs Google's speech_embedding weights: {INSTALL} "
                              f"(or set {ENV} to a folder holding {' and '.join(FILES)})")
        folder = Path(list(spec.submodule_search_locations)[0]) / "resources" / "models"
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise PluginError(f"speech-embedding: {', '.join(missing)} not found in {folder}; the openwakeword "
                          f"releases after 0.4 no longer ship them: {INSTALL}")
    return folder


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # a truncated or foreign file: protobuf's errors are varied
        raise PluginError(f"speech-embedding: cannot read {path}: {exc}") from exc
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def _tensor(found: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> Tensor:
    array = found.get(name)
    if array is None or tuple(array.shape) != shape or not np.isfinite(array).all():
        got = "missing" if array is None else f"shape {tuple(array.shape)}"
        raise PluginError(f"speech-embedding: {path} is not the expected model: {name} {got}, expected "
                          f"finite values of shape {shape}")
    return torch.from_numpy(np.array(array, dtype=np.float32))


@functools.lru_cache(maxsize=2)
def load_weights(folder: str) -> dict[str, Tensor]:
    """Every weight of the front end and the network, by name, float32, read once per folder.

    Keys: ``stft.real``, ``stft.imag`` (257, 1, 512); ``mel`` (257, 32); ``bn.{scale,bias,mean,var}``
    (24,); ``{conv}.weight`` (out, in, kt, kf) and ``{conv}.bias`` (out,) for every convolution
    after the first (the first and the last have no bias).

    Raises:
        PluginError: a file is unreadable or does not hold the expected tensors.
    """
    root = Path(folder)
    mel_path, net_path = root / FILES[0], root / FILES[1]
    mel, net = _initializers(mel_path), _initializers(net_path)
    out = {
        "stft.real": _tensor(mel, "0.stft.conv_real.weight", (257, 1, 512), mel_path),
        "stft.imag": _tensor(mel, "0.stft.conv_imag.weight", (257, 1, 512), mel_path),
        "mel": _tensor(mel, "1.melW", (257, 32), mel_path),
    }
    bn = "model/batch_normalization/"
    for key, name in (("scale", "ReadVariableOp:0"), ("bias", "ReadVariableOp_1:0"),
                      ("mean", "FusedBatchNormV3/ReadVariableOp:0"), ("var", "FusedBatchNormV3/ReadVariableOp_1:0")):
        out[f"bn.{key}"] = _tensor(net, bn + name, (24,), net_path)
    for name, o, c, kt, kf in CONVS:
        if name == "conv2d":
            weight = "model/conv2d/StatefulPartitionedCall/StatefulPartitionedCall/Conv2D/ReadVariableOp:0"
        elif name == "conv2d_19":
            weight = "model/conv2d_19/Conv2D/ReadVariableOp:0"
        else:
            weight = f"model/{name}/Conv2D_weights_fused_bn"
            out[f"{name}.bias"] = _tensor(net, f"model/{name}/Conv2D_bias_fused_bn", (o,), net_path)
        out[f"{name}.weight"] = _tensor(net, weight, (o, c, kt, kf), net_path)
    return out
