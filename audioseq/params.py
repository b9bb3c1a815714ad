"""Typed component parameters: read from a factory's signature, parsed from ``k=v`` strings.

A component declares its parameters as typed keyword arguments with defaults after the
positional arguments the contract gives it (``input_size, hidden_size`` for a cell,
``sample_rate`` for a feature, ``root`` for a dataset). The CLI, ``audioseq plugins --json``
and the app's widgets are all generated from these declarations.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable, Literal, Mapping, Sequence, Union

from .errors import ParameterError

_SCALARS = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared parameter of a component."""

    name: str
    type: Any  # a Python type or typing construct
    default: Any
    help: str = ""

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        inner = _strip_optional(self.type)
        if typing.get_origin(inner) is Literal:
            return typing.get_args(inner)
        return None

    @property
    def optional(self) -> bool:
        return _is_optional(self.type)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type_name,
            "default": _jsonable(self.default),
            "choices": list(self.choices) if self.choices else None,
            "help": self.help,
        }


def supported(tp: Any) -> bool:
    """Whether the CLI, ``plugins --json`` and the app can offer a parameter of type ``tp``: bool,
    int, float, str, a ``Literal`` of such values, a list or tuple of a scalar type, or any of
    these ``| None``."""
    if _is_optional(tp):
        tp = _strip_optional(tp)
    if tp in _SCALARS:
        return True
    origin = typing.get_origin(tp)
    if origin is Literal:
        return all(type(choice) in _SCALARS for choice in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return len(set(args)) <= 1 and all(a in _SCALARS for a in args)
    return False


SUPPORTED_TYPES = "bool, int, float, str, a Literal of choices, a list or tuple of one of those, or any of them | None"


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, getattr(__import__("types"), "UnionType", Union)) and type(
        None
    ) in typing.get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else Union[tuple(rest)]
    return tp


def type_name(tp: Any) -> str:
    if tp in _SCALARS:
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "choice"
    if _is_optional(tp):
        return f"{type_name(_strip_optional(tp))} | None"
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list[{type_name(args[0]) if args else 'str'}]"
    return getattr(tp, "__name__", str(tp))


def _param_docs(factory: Callable[..., Any]) -> dict[str, str]:
    """``name: text`` lines from an ``Args:``/``Parameters:`` docstring section."""
    doc = inspect.getdoc(factory) or ""
    if inspect.isclass(factory) and not doc:
        doc = inspect.getdoc(factory.__init__) or ""
    out: dict[str, str] = {}
    in_args, indent, last = False, None, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.rstrip(":") in ("Args", "Arguments", "Parameters", "Params", "Attributes"):
            in_args, indent, last = True, None, None
            continue
        if in_args:
            if not stripped:
                continue
            if not line.startswith((" ", "\t")):
                in_args = False
                continue
            depth = len(line) - len(line.lstrip())
            if indent is not None and depth > indent and last is not None:  # the text goes on
                out[last] = f"{out[last]} {stripped}".strip()
                continue
            name, sep, text = stripped.partition(":")
            name = name.split("(")[0].strip()
            if sep and name.isidentifier():
                indent, last = depth, name
                out[name] = text.strip()
    return out


def declared_params(factory: Callable[..., Any], n_positional: int) -> list[Param]:
    """The typed keyword parameters of ``factory`` after its first ``n_positional`` arguments.

    Raises ``ParameterError`` when a parameter has no type annotation or no default, because
    the CLI and UI could not offer it.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception as exc:  # unresolved forward references in a plugin
        raise ParameterError(f"cannot read type hints of {factory!r}: {exc}") from exc
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][:n_positional]
    docs = _param_docs(factory)
    out: list[Param] = []
    for p in params:
        if p in positional or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise ParameterError(
                f"{getattr(factory, '__qualname__', factory)}: parameter {p.name!r} needs a default"
            )
        if p.name not in hints:
            raise ParameterError(
                f"{getattr(factory, '__qualname__', factory)}: parameter {p.name!r} needs a type annotation"
            )
        out.append(_declared(factory, p.name, hints[p.name], p.default, docs.get(p.name, "")))
    return out


def dataclass_params(cls: type) -> list[Param]:
    """The fields of a settings dataclass as parameters (help from its ``Attributes:`` section)."""
    hints = typing.get_type_hints(cls)
    docs = _param_docs(cls)
    return [
        _declared(cls, f.name, hints[f.name], f.default, docs.get(f.name, ""))
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    ]


def _declared(owner: Any, name: str, tp: Any, default: Any, help_text: str) -> Param:
    """A declared parameter, once its type is one the CLI and app can offer and its default fits it."""
    who = f"{getattr(owner, '__qualname__', owner)}: parameter {name!r}"
    if not supported(tp):
        raise ParameterError(f"{who} has type {type_name(tp)}, which cannot be given on the command line "
                             f"or in the app; use {SUPPORTED_TYPES}")
    try:
        _convert(tp, default, name)
    except ParameterError as exc:
        raise ParameterError(f"{who} has the default {default!r}, which is not a {type_name(tp)} "
                             f"({exc.args[0].split(': ', 1)[-1]})") from None
    return Param(name, tp, default, help_text)


def _convert(tp: Any, value: Any, name: str) -> Any:
    if _is_optional(tp):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return _convert(_strip_optional(tp), value, name)
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            try:
                if _convert(type(choice), value, name) == choice:
                    return choice
            except ParameterError:
                continue
        raise ParameterError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis] or [str]
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
        converted = [_convert(args[0], i, name) for i in items]
        fixed = typing.get_args(tp)
        if origin is tuple and fixed and Ellipsis not in fixed and len(converted) != len(fixed):
            raise ParameterError(f"{name}: expected {len(fixed)} comma-separated values, got {len(converted)}")
        return tuple(converted) if origin is tuple else converted
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ParameterError(f"{name}: expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ParameterError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ParameterError(f"{name}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ParameterError(f"{name}: expected a number, got {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name}: expected a number, got {value!r}") from None
        return result
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ParameterError(f"{name}: expected text, got {value!r}")
        return str(value)
    raise ParameterError(f"{name}: parameters of type {type_name(tp)} are not supported; use {SUPPORTED_TYPES}")


def validate(
    params: Sequence[Param], values: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Check names and convert values (strings from the CLI, or Python values) to their types.

    Returns only the given parameters, converted. Raises ``ParameterError`` naming ``owner``.
    """
    by_name = {p.name: p for p in params}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise ParameterError(f"{owner}: unknown parameter {key!r}; known: {known}")
        out[key] = _convert(by_name[key].type, value, f"{owner}.{key}")
    return out


def complete(params: Sequence[Param], values: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """Every declared parameter with its value: the given ones converted, the others at their
    defaults, as JSON values. What model files store, so that a component whose defaults change
    in a later release still rebuilds as it was trained. Raises ``ParameterError`` as ``validate``."""
    given = validate(params, values, owner)
    return {p.name: _jsonable(given.get(p.name, p.default)) for p in params}


def parse_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` from the command line to a dict, with a clear error on a bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"expected key=value, got {pair!r}")
        out[key.strip()] = value
    return out
