"""Shared helpers for the benchmarks: the FSDD folder and a model of the default size."""

from __future__ import annotations

import sys
from pathlib import Path

FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"


def fsdd_files() -> list[str]:
    if not FSDD.is_dir():
        sys.exit(f"FSDD recordings not found at {FSDD}")
    return sorted(str(p) for p in FSDD.glob("*.wav"))


def model_path() -> str:
    """The bundled digits model (what users run)."""
    from audioseq.classifier import resolve_model

    path = resolve_model("digits")
    if not path.exists():
        sys.exit("the bundled digits model is missing: run scripts/train_digits.sh")
    return str(path)
