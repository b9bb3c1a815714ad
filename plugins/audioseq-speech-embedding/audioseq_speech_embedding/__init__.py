"""audioseq-speech-embedding: a feature learned from many speakers.

Registers ``speech-embedding`` through the ``audioseq`` entry-point group: Google's
speech_embedding network (pretrained on a large amount of speech, Apache-2.0), rebuilt in
torch and run over whole clips. Its weights come from the ``openwakeword`` 0.4 package.
"""

from __future__ import annotations

from audioseq.hookspecs import Register, hookimpl

from .feature import SpeechEmbedding

__all__ = ["SpeechEmbedding", "register_features"]


@hookimpl
def register_features(register: Register) -> None:
    register("speech-embedding", SpeechEmbedding)
