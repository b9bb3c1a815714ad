"""Built-in ready-trained models: every ``audioseq/models/NAME.safetensors`` (``digits``)."""

from __future__ import annotations

from pathlib import Path

from ..hookspecs import RegisterModel, hookimpl, register_model_files

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@hookimpl
def register_models(register: RegisterModel) -> None:
    register_model_files(register, MODELS_DIR)
