"""Contract checks for plugin authors: call them from your plugin's own tests.

    from audioseq.testing import check_cell, check_dataset, check_feature

    def test_contracts(tmp_path):
        check_cell(MyCell, hidden_size=8)
        check_feature(MyFeature, sample_rate=16000)
        check_dataset(MyDataset, str(tmp_path / "fixture"))

Each check raises :class:`ContractError` (an ``AssertionError``) saying which property broke,
with the numbers, and how to fix it. They run in well under a second on tiny inputs and leave
the caller's random number streams as they were.
"""

from __future__ import annotations

from .cells import check_cell
from .contract import ContractError
from .datasets import check_dataset
from .features import check_feature

__all__ = ["ContractError", "check_cell", "check_dataset", "check_feature"]
