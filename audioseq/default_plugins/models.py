"""Built-in ready-trained models: every ``audioseq/models/NAME.safetensors`` (``digits``)."""

from __future__ import annotations

from pathlib import Path

from ..hookspecs import RegisterModel, hookimpl

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@hookimpl
def register_models(register: RegisterModel) -> None:
    for path in sorted(MODELS_DIR.glob("*.safetensors")):
        register(path.stem, path)
