"""Widgets generated from a component's typed parameters (``audioseq.component_params``).

Cells and features declare their parameters as typed keyword arguments, plugins included, so
the Teach page never lists them by hand: a new plugin's parameters appear as widgets by
themselves. Values that are not plain numbers, flags or choices (optional numbers, lists) are
edited as text and converted by audioseq itself, with the same rules as ``--cell-opt k=v``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import audioseq

from session import KEEP, default


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def param_widget(param: dict[str, Any], key: str) -> Any:
    """Draw one parameter (name, type, default, choices, help) and return its value."""
    name, kind, value = param["name"], param["type"], param["default"]
    help_text = param["help"] or None
    if param["choices"]:
        options = list(param["choices"])
        default(key, value if value in options else options[0], options)
        return st.selectbox(name, options, key=key, help=help_text)
    if kind == "bool":
        default(key, bool(value))
        return st.checkbox(name, key=key, help=help_text)
    if kind == "int":
        default(key, int(value))
        return st.number_input(name, step=1, key=key, help=help_text)
    if kind == "float":
        default(key, float(value))
        return st.number_input(name, format="%g", key=key, help=help_text)
    default(key, _as_text(value))
    hint = "empty for none" if kind.endswith("| None") else "comma-separated" if kind.startswith("list") else kind
    return st.text_input(f"{name} ({hint})", key=key, help=help_text)


def component_widgets(kind: str, name: str, prefix: str) -> dict[str, Any]:
    """What ``name`` is, then one widget per typed parameter of the cell or feature, in a folded
    section (the names are those of ``--cell-opt``/``--feature-opt``); returns name → value."""
    st.caption(summary(kind, name))
    params = audioseq.component_params(kind, name)
    if not params:
        return {}
    with st.expander(f"Settings of `{name}`"):
        return {p["name"]: param_widget(p, f"{KEEP}{prefix}.{kind}.{name}.{p['name']}") for p in params}


def summary(kind: str, name: str) -> str:
    """A component's own one-line description (its docstring's first line), from any plugin."""
    from audioseq import plugins

    component = plugins.get_component(kind, name)
    return component.doc or f"A {kind} from the {component.plugin} plugin."
