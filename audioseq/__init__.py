"""audioseq: classify audio clips with recurrent networks (RNN, LSTM, GRU), grown through plugins.

    >>> import audioseq
    >>> clf = audioseq.load("digits")
    >>> clf.predict(["one.wav"])[0].label

Heavy modules (torch) are imported on first use, so the command line starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AudioError,
    AudioseqError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    EvaluationError,
    ModelFileError,
    NonFiniteAudioError,
    ParameterError,
    PluginError,
    SilentAudioError,
    UnknownComponentError,
    UnreadableAudioError,
    UnsupportedInputError,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "AudioTooLongError",
    "AudioTooShortError",
    "AudioseqError",
    "Classifier",
    "EmptyAudioError",
    "EvaluationError",
    "Example",
    "Inspection",
    "ModelFileError",
    "NonFiniteAudioError",
    "ParameterError",
    "PluginError",
    "Prediction",
    "SilentAudioError",
    "TrainConfig",
    "UnknownComponentError",
    "UnreadableAudioError",
    "UnsupportedInputError",
    "__version__",
    "audio_info",
    "bundled_models",
    "component_params",
    "evaluate",
    "hookimpl",
    "list_cells",
    "list_datasets",
    "list_features",
    "load",
    "load_dataset",
    "train",
]

_LAZY = {
    "Classifier": "classifier",
    "Prediction": "classifier",
    "load": "classifier",
    "bundled_models": "classifier",
    "Example": "dataset",
    "audio_info": "audio",
    "Inspection": "inspection",
    "train": "training",
    "TrainConfig": "training",
    "evaluate": "evaluation",
    "load_dataset": "evaluation",
}

if TYPE_CHECKING:
    from .classifier import Classifier, Prediction, bundled_models, load
    from .audio import audio_info
    from .dataset import Example
    from .evaluation import evaluate, load_dataset
    from .inspection import Inspection
    from .training import TrainConfig, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'audioseq' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names too, lazy ones included, so that completion in a REPL finds ``load``."""
    return sorted(set(globals()) | set(__all__))


def list_cells() -> list[str]:
    """Names of the registered recurrent cells, sorted."""
    from .plugins import list_components

    return list_components("cell")


def list_features() -> list[str]:
    """Names of the registered feature extractors, sorted."""
    from .plugins import list_components

    return list_components("feature")


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    from .plugins import list_components

    return list_components("dataset")


def component_params(kind: str, name: str) -> list[dict[str, Any]]:
    """Typed parameters of a component (``kind``: cell, feature or dataset), as dicts.

    Each has name, type, default, choices and help: what the CLI accepts and the app draws.
    """
    from .plugins import component_params as _params

    return [p.to_json() for p in _params(kind, name)]  # type: ignore[arg-type]
