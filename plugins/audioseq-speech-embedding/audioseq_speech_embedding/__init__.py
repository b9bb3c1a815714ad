"""audioseq-speech-embedding: a feature learned from many speakers.

Registers ``speech-embedding`` through the ``audioseq`` entry-point group: Google's
speech_embedding network (pretrained on a large amount of speech, Apache-2.0), rebuilt in
torch and run over whole clips. Its weights come from the ``openwakeword`` 0.4 package.

Also registers the ready-trained model ``digits-speech-embedding``: spoken digits on this
feature, for new voices (``audioseq.load("digits-speech-embedding")``; model card beside it).
"""

from __future__ import annotations

from pathlib import Path

from audioseq.hookspecs import Register, RegisterModel, hookimpl, register_model_files

from .feature import SpeechEmbedding

__all__ = ["SpeechEmbedding", "register_features", "register_models"]

MODELS = Path(__file__).resolve().parent / "models"


@hookimpl
def register_features(register: Register) -> None:
    register("speech-embedding", SpeechEmbedding)


@hookimpl
def register_models(register: RegisterModel) -> None:
    register_model_files(register, MODELS)
