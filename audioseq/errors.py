"""Typed errors. Every error carries the offending path or component name."""

from __future__ import annotations

import os
from typing import Iterable, Mapping


class AudioseqError(Exception):
    """Base class of every error audioseq raises on purpose."""


class AudioError(AudioseqError, ValueError):
    """A clip that cannot be classified. ``source`` names the file (or ``<array>``)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.reason = message

    def __reduce__(self) -> tuple:  # errors cross process boundaries (decoding workers)
        return (type(self), (self.source, self.reason))


class UnreadableAudioError(AudioError):
    """Not audio, an unknown format, a damaged header or truncated data."""


class UnsupportedInputError(UnreadableAudioError, TypeError):
    """An input that is neither a path nor a ``(waveform, sample_rate)`` pair (``None``, a number,
    an array without its rate). A ``TypeError`` too: the caller passed the wrong kind of thing."""


class EmptyAudioError(AudioError):
    """Zero samples, or a zero sample rate / zero channels."""


class AudioTooShortError(AudioError):
    """Fewer samples than one analysis frame (after preprocessing)."""


class SilentAudioError(AudioError):
    """No sample reaches the model's silence level (``Preprocess.silence_dbfs``): nothing to classify."""


class AudioTooLongError(AudioError):
    """Longer than the configured limit; detected from the header before decoding."""


class NonFiniteAudioError(AudioError):
    """NaN or infinite samples."""


class ModelFileError(AudioseqError):
    """A model file that is malformed, inconsistent or unsafe. ``path`` names the file."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.reason))


class EvaluationError(AudioseqError, ValueError):
    """An evaluation with no clip to score: the split is empty, or none of its clips could be scored."""


class PluginError(AudioseqError):
    """A plugin failed to import, a hook raised, or two components share one name."""


class ParameterError(AudioseqError, ValueError):
    """A component parameter with an unknown name or a value of the wrong type."""


class UnknownComponentError(AudioseqError, KeyError):
    """A cell, feature or dataset name that no installed plugin registers."""

    def __init__(self, kind: str, name: str, known: Iterable[str], provider: Mapping[str, str] | None = None,
                 broken: Mapping[str, str] | None = None, also: Iterable[str] = ()) -> None:
        """``also``: the other components a model needs that are missing too, each as "kind 'name'
        from X", so that one message lists everything to install."""
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        self.provider = dict(provider) if provider else None  # who gave it when a model was made, if known
        self.broken = dict(broken) if broken else {}  # installed plugins that failed to load -> their error
        hint = ", ".join(self.known) or "none"
        plugin = (self.provider or {}).get("plugin")
        broken = self.broken
        if plugin is not None and plugin in broken:
            where = f"The model was made with it from plugin {plugin!r}, which is installed but failed to load: {broken[plugin]}"
        elif plugin is None:
            where = "If it comes from a plugin, install that plugin (see `audioseq plugins`)"
            if broken:
                where += f"; these installed plugins failed to load: {', '.join(sorted(broken))}"
        else:
            dist = self.provider.get("distribution")
            made = f"{dist} {self.provider.get('version', '')}".strip() if dist else None
            where = (f"The model was made with it from plugin {plugin!r}"
                     + (f" of {made}: install {dist}" if made else ": install that plugin"))
        allowed = os.environ.get("AUDIOSEQ_LOAD_PLUGINS")
        if allowed is not None:
            where += (f", or add {repr(plugin) if plugin else 'it'} to AUDIOSEQ_LOAD_PLUGINS (now {allowed!r}), "
                      "which limits the plugins loaded")
        self.also = list(also)
        if self.also:
            where += f". The model also needs {'; '.join(self.also)}, not loaded either"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {hint}. {where}.")

    def __reduce__(self) -> tuple:
        return (type(self), (self.kind, self.name, self.known, self.provider, self.broken, self.also))

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]
