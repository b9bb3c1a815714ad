"""audioseq-librosa: features torchaudio lacks, computed with librosa.

Registers ``cqt``, ``chroma``, ``spectral-contrast`` and ``mfcc-deltas`` through the
``audioseq`` entry-point group.
"""

from __future__ import annotations

from audioseq.hookspecs import Register, hookimpl

from .features import CQT, Chroma, LibrosaFeature, MFCCDeltas, SpectralContrast

__all__ = ["CQT", "Chroma", "LibrosaFeature", "MFCCDeltas", "SpectralContrast", "register_features"]


@hookimpl
def register_features(register: Register) -> None:
    register("cqt", CQT)
    register("chroma", Chroma)
    register("spectral-contrast", SpectralContrast)
    register("mfcc-deltas", MFCCDeltas)
