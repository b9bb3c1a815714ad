"""Shared helpers for the benchmarks: the FSDD folder and a model of the default size."""

from __future__ import annotations

import sys
import time
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


def timed(fn, *args, repeat: int = 3) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (the least disturbed by the rest of the machine)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result
