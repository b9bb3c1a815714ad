"""audioseq-fsdd: the Free Spoken Digit Dataset as the ``fsdd`` dataset.

Free Spoken Digit Dataset (Zohar Jackson et al.), CC BY-SA 4.0. Registered through the
``audioseq`` entry-point group.
"""

from __future__ import annotations

from audioseq.hookspecs import Register, hookimpl

from .dataset import FSDD
from .fetch import MIN_RECORDINGS, FSDDError

__all__ = ["FSDD", "FSDDError", "MIN_RECORDINGS", "register_datasets"]


@hookimpl
def register_datasets(register: Register) -> None:
    register("fsdd", FSDD)
