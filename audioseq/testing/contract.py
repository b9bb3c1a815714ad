"""What the contract checks share: the error they raise and helpers to compare tensors and states."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from ..errors import AudioseqError, ParameterError
from ..params import Param, declared_params, validate


class ContractError(AudioseqError, AssertionError):
    """A component breaks its contract.

    The message says which property broke, with the numbers, and how to fix it. It is an
    ``AssertionError`` so that test runners report it as a failed check, not as a crash.

    Attributes:
        component: the factory checked, e.g. ``my_plugin.cells.MyCell``.
        check: the property that broke, e.g. ``padding leaked into the state``.
        fix: what to change.
    """

    def __init__(self, component: str, check: str, detail: str, fix: str) -> None:
        super().__init__(f"{component}: {check}: {detail} — {fix}")
        self.component = component
        self.check = check
        self.fix = fix


def component_name(factory: Callable[..., Any]) -> str:
    """``module.QualName`` of a factory, to name it in messages."""
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}.{name}" if module else name


@contextlib.contextmanager
def quiet_torch(seed: int = 0) -> Iterator[None]:
    """Seeded, single-threaded torch for the block; the caller's random streams and thread count come back after.

    The checks run thousands of tiny operations: extra threads only add hand-offs, which cost
    seconds on a loaded machine.
    """
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def checked_params(
    factory: Callable[..., Any], positional: int, params: dict[str, Any], role: str
) -> list[Param]:
    """The factory's declared parameters, after checking that the CLI and the app can offer them.

    ``positional`` is how many leading arguments the contract passes (2 for a cell, 1 for a
    feature or dataset); ``role`` names them in the fix, e.g. ``input_size and hidden_size``.
    """
    who = component_name(factory)
    try:
        declared = declared_params(factory, positional)
        validate(declared, {p.name: p.default for p in declared}, who)
        validate(declared, params, who)
    except ParameterError as exc:
        raise ContractError(
            who, "parameters", str(exc),
            f"declare every parameter after {role} as a typed keyword argument whose default has that "
            "type (the CLI, `audioseq plugins` and the app are generated from the signature)",
        ) from exc
    return declared


def state_leaves(state: Any) -> list[Tensor]:
    """The tensors of a state: a tensor, or a (nested) tuple of tensors. Raises TypeError otherwise."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, tuple) and state:
        return [leaf for part in state for leaf in state_leaves(part)]
    raise TypeError(f"a state must be a tensor or a non-empty tuple of tensors, not {type(state).__name__}")


def map_state(fn: Callable[[Tensor], Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor of a state, keeping its structure."""
    if isinstance(state, tuple):
        return tuple(map_state(fn, part) for part in state)
    return fn(state)


def max_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference; infinite when the shapes differ or either side has NaN.

    NaN must count as a difference: ``nan > tolerance`` is False and would let a broken
    result pass every comparison.
    """
    if a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    diff = float((a.detach().double() - b.detach().double()).abs().max())
    return math.inf if math.isnan(diff) else diff


def state_diff(a: Any, b: Any) -> float:
    """Largest absolute difference over the tensors of two states of the same structure."""
    la, lb = state_leaves(a), state_leaves(b)
    if len(la) != len(lb):
        return math.inf
    return max(max_diff(x, y) for x, y in zip(la, lb))


def batch_row(state: Any, index: int) -> Any:
    """The state of one sequence of a batch, keeping a batch dimension of 1."""
    return map_state(lambda t: t[index : index + 1], state)


def random_like(state: Any, generator: torch.Generator) -> Any:
    """A state of the same structure with standard-normal values (a state mid-stream)."""
    return map_state(
        lambda t: torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device), state
    )
