"""The model's description, stored as JSON in the model file's metadata."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .audio import AudioLimits
from .model import NetworkConfig
from .preprocess import Preprocess

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,199}")  # PEP 508 names, versions, module names

def check_label_text(labels: list[str]) -> None:
    """Refuse labels a model file cannot hold as text to show: control characters (line breaks,
    terminal escapes) or lone surrogates (what ``os.fsdecode`` makes of a name that is not UTF-8).

    Raises:
        ValueError: naming the first such label.
    """
    for label in labels:
        if _CONTROL_CHARACTERS.search(label):
            raise ValueError(f"labels must not hold control characters (line breaks, tabs, escapes): {label!r}")
        try:
            label.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"labels must be Unicode text (a name that is not UTF-8 holds lone surrogates): "
                             f"{label!r}; rename it") from None


FORMAT = "audioseq.model"
FORMAT_VERSION = 1


@dataclasses.dataclass
class ModelSpec:
    """Everything needed to rebuild a classifier around its weights.

    Attributes:
        labels: class names, in the order of the network's outputs.
        sample_rate: rate (Hz) every clip is resampled to.
        feature: registered feature name; ``feature_params`` its parameters.
        network: the recurrent network's shape.
        preprocess: waveform preprocessing applied before the features.
        max_seconds: longest clip accepted (checked from the header before decoding).
        metrics: training and evaluation results, informative only.
        providers: ``{"feature": ..., "cell": ...}``, each ``{"plugin", "distribution", "version"}``
            (the last two when known): who gave the components when the model was made, so that
            a model whose plugin is missing can name what to install. Informative only.
    """

    labels: list[str]
    sample_rate: int
    network: NetworkConfig
    feature: str = "logmel"
    feature_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocess: Preprocess = dataclasses.field(default_factory=Preprocess)
    max_seconds: float = 600.0
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    providers: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def limits(self) -> AudioLimits:
        return AudioLimits(max_seconds=self.max_seconds)

    def to_document(self) -> dict[str, Any]:
        from . import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "audioseq_version": __version__,
            "labels": list(self.labels),
            "sample_rate": self.sample_rate,
            "feature": {"name": self.feature, "params": dict(self.feature_params)},
            "network": dataclasses.asdict(self.network),
            "preprocess": self.preprocess.to_dict(),
            "max_seconds": self.max_seconds,
            "metrics": self.metrics,
            "providers": {kind: dict(who) for kind, who in self.providers.items()},
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> "ModelSpec":
        """Parse and check a stored document; raises ValueError/TypeError/KeyError on a bad one."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        if not isinstance(doc.get("format_version"), int) or isinstance(doc["format_version"], bool):
            raise ValueError(f"format_version must be an integer, not {doc.get('format_version')!r}")
        if doc["format_version"] > FORMAT_VERSION:
            raise ValueError(
                f"format version {doc.get('format_version')!r} is newer than this audioseq reads "
                f"({FORMAT_VERSION}); upgrade audioseq"
            )
        labels = doc["labels"]
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise ValueError("labels must be a non-empty list of strings")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        check_label_text(labels)
        sample_rate = doc["sample_rate"]
        if not isinstance(sample_rate, int) or not 1000 <= sample_rate <= 384000:
            raise ValueError(f"sample_rate {sample_rate!r} is not a plausible rate")
        if not isinstance(doc.get("network"), dict):
            raise ValueError("network must be an object")
        net = dict(doc["network"])
        if not isinstance(net.get("cell_params", {}), dict):
            raise ValueError("network.cell_params must be an object")
        if not isinstance(net.get("utterance_norm", True), bool) or not isinstance(net.get("bidirectional", False), bool):
            raise ValueError("network.utterance_norm and network.bidirectional must be true or false")
        fields = {f.name for f in dataclasses.fields(NetworkConfig)}
        if set(net) - fields:
            raise ValueError(f"unknown network settings: {', '.join(sorted(set(net) - fields))}")
        network = NetworkConfig(**net)
        if network.num_classes != len(labels):
            raise ValueError(f"network has {network.num_classes} outputs but there are {len(labels)} labels")
        if not isinstance(network.cell, str):
            raise ValueError("network.cell must be a name")
        for name in ("input_size", "hidden_size", "num_layers", "num_classes"):
            value = getattr(network, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
                raise ValueError(f"network.{name} = {value!r} is out of range")
        feature = doc["feature"]
        if not isinstance(feature, dict) or not isinstance(feature.get("name"), str) or not isinstance(feature.get("params", {}), dict):
            raise ValueError("feature must be {name: str, params: {...}}")
        if not isinstance(doc.get("preprocess", {}), dict):
            raise ValueError("preprocess must be an object")
        preprocess = Preprocess.from_dict(dict(doc.get("preprocess", {})))
        if preprocess.highpass_hz >= sample_rate / 2:
            raise ValueError(f"preprocess.highpass_hz {preprocess.highpass_hz:g} is not below half the "
                             f"sample rate ({sample_rate / 2:g} Hz)")
        max_seconds = float(doc.get("max_seconds", 600.0))
        if not 0 < max_seconds < 1e7:
            raise ValueError(f"max_seconds {max_seconds!r} is out of range")
        metrics = doc.get("metrics") or {}
        if not isinstance(metrics, dict):
            raise ValueError("metrics must be an object")
        providers = doc.get("providers") or {}
        if not (isinstance(providers, dict) and all(
                isinstance(who, dict) and all(isinstance(v, str) for v in who.values()) for who in providers.values())):
            raise ValueError("providers must map a component kind to {plugin, distribution, version} strings")
        # Informative only, and shown in messages that say what to install: a name that is not a
        # plain package/plugin name (spaces, URLs, markup, escapes) is dropped, not repeated.
        providers = {kind: {k: v for k, v in who.items() if _PLAIN_NAME.fullmatch(v)}
                     for kind, who in providers.items()}
        return cls(
            labels=labels,
            sample_rate=sample_rate,
            network=network,
            feature=feature["name"],
            feature_params=dict(feature.get("params", {})),
            preprocess=preprocess,
            max_seconds=max_seconds,
            metrics=metrics,
            providers={str(kind): dict(who) for kind, who in providers.items()},
        )
