"""Session state the pages share, and widget values that outlive a page switch.

Streamlit forgets the value of a widget as soon as a run does not draw it, so switching to
another page and back would reset the model choice, the class names and the settings. Widgets
whose key starts with ``KEEP`` are re-assigned at the start of every run (by the entry page),
which turns their values into plain session state that survives; such widgets take their
initial value from :func:`default`, never from a ``value=`` argument.
"""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

KEEP = "keep."


def keep_widget_values() -> None:
    """Carry every ``keep.*`` widget value over to this run, whichever page it shows."""
    for key in [k for k in st.session_state if str(k).startswith(KEEP)]:
        st.session_state[key] = st.session_state[key]


def default(key: str, value: Any, options: Sequence[Any] | None = None) -> None:
    """Give a kept widget its first value, or a fresh one when its options no longer hold it."""
    if key not in st.session_state or (options is not None and st.session_state[key] not in options):
        st.session_state[key] = value
