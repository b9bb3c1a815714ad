"""The cells of audioseq-cells: their contract, their equations, and that each one learns."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import audioseq
from audioseq.default_plugins.cells import LSTMCell
from audioseq.evaluation import load_dataset
from audioseq.plugins import get_component, plugins_info
from audioseq.training import TrainConfig, train
from audioseq.testing import check_cell

audioseq_cells = pytest.importorskip(
    "audioseq_cells", reason="audioseq-cells is not installed: pip install -e plugins/audioseq-cells"
)

NAMES = ("peephole-lstm", "layernorm-lstm", "mgu", "indrnn", "ligru")
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    *[(name, {}) for name in NAMES],
    ("peephole-lstm", {"forget_bias": 0.0}),
    ("layernorm-lstm", {"eps": 1e-3}),
    ("mgu", {"forget_bias": -1.0}),
    ("indrnn", {"max_recurrent_weight": 0.5}),
    ("ligru", {"normalization": "none"}),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a loaded machine the hand-offs cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_cell_is_registered_by_the_plugin() -> None:
    assert set(NAMES) <= set(audioseq.list_cells())
    (info,) = [p for p in plugins_info() if p["name"] == "cells"]
    assert info["error"] is None and info["version"] == "0.1.0"
    assert sorted(c["name"] for c in info["components"]) == sorted(NAMES)
    for component in info["components"]:
        assert component["doc"] and all(p["help"] for p in component["params"])


@pytest.mark.parametrize("name, params", VARIANTS)
def test_cell_contract(name: str, params: dict[str, Any]) -> None:
    check_cell(get_component("cell", name).factory, **params)


def test_peephole_lstm_without_peepholes_is_the_lstm() -> None:
    torch.manual_seed(0)
    peephole, lstm = audioseq_cells.PeepholeLSTMCell(4, 6), LSTMCell(4, 6)
    with torch.no_grad():
        lstm.fused.weight_ih_l0.copy_(peephole.weight_ih)
        lstm.fused.weight_hh_l0.copy_(peephole.weight_hh)
        lstm.fused.bias_ih_l0.copy_(peephole.bias)
        lstm.fused.bias_hh_l0.zero_()
        x = torch.randn(3, 4)
        state = (torch.randn(3, 6), torch.randn(3, 6))
        peeping = peephole(x, state)[0]
        peephole.peephole.zero_()
        h, (h2, c) = peephole(x, state)
        ref_h, (_, ref_c) = lstm(x, state)
    assert float((h - ref_h).abs().max()) < 1e-6 and float((c - ref_c).abs().max()) < 1e-6
    assert float((peeping - h).abs().max()) > 1e-3  # the peepholes do take part


def test_indrnn_clamps_its_recurrent_weights() -> None:
    torch.manual_seed(0)
    cell = audioseq_cells.IndRNNCell(2, 3, max_recurrent_weight=0.5)
    with torch.no_grad():
        cell.recurrent_weight.copy_(torch.tensor([4.0, -4.0, 0.25]))
        cell.weight_ih.zero_()
        cell.bias.zero_()
        h, _ = cell(torch.zeros(1, 2), torch.tensor([[2.0, -2.0, 2.0]]))
    # ReLU(u ⊙ h) with u clamped to [0.5, −0.5, 0.25]
    assert h.tolist() == [[1.0, 1.0, 0.5]]
    with pytest.raises(audioseq.ParameterError, match="max_recurrent_weight"):
        audioseq_cells.IndRNNCell(2, 3, max_recurrent_weight=0.0)


@pytest.mark.parametrize("factory", ["LayerNormLSTMCell", "LiGRUCell"])
def test_layer_normalised_cells_refuse_a_single_unit(factory: str) -> None:
    """A layer norm over one unit is constant, so such a cell would ignore its input."""
    with pytest.raises(audioseq.ParameterError, match="hidden_size"):
        getattr(audioseq_cells, factory)(3, 1)
    check_cell(getattr(audioseq_cells, factory), input_size=1, hidden_size=2)


def test_ligru_update_gate_interpolates_to_a_non_negative_candidate() -> None:
    torch.manual_seed(0)
    cell = audioseq_cells.LiGRUCell(4, 5)
    state = torch.randn(2, 5)
    h, _, gates = cell.forward_gates(torch.randn(2, 4), state)
    z, candidate = gates["update"], gates["candidate"]
    assert bool((candidate >= 0).all()) and bool(((z > 0) & (z < 1)).all())
    assert torch.allclose(h, z * state + (1 - z) * candidate)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_cell_learns_the_synthetic_sounds(name: str) -> None:
    data = load_dataset("synthetic", None, {"per_class": 20})
    config = TrainConfig(
        cell=name, hidden_size=16, num_layers=1, bidirectional=False, pooling="mean", dropout=0.0,
        augment=None, epochs=12, patience=12, batch_size=16, lr=1e-2, device="cpu",
    )
    result = train(data, config)
    assert len(data.labels) == 5  # chance is 0.2
    assert result.metrics["test"]["accuracy"] >= 0.6, result.metrics["test"]
