"""audioseq in the browser: classify clips, teach a recurrent network, look inside it.

Started by ``audioseq app [--port N] [--models DIR]``, which runs
``streamlit run ui/app.py -- --models DIR`` from the repository root.
"""

from __future__ import annotations

import streamlit as st

from audioseq import plugins

from session import keep_widget_values

st.set_page_config(page_title="audioseq", page_icon=":material/graphic_eq:", layout="wide")
keep_widget_values()
try:
    plugins.registry()  # loads the plugins once, so that what went wrong can be said here
except plugins.PluginError as exc:  # two plugins give one name: nothing can be offered until one goes
    st.error(f"The installed plugins cannot be loaded together: {exc}")
    st.stop()
for failed in plugins.broken:
    st.sidebar.warning(f"Plugin `{failed.name}` was skipped, so its components are not offered: {failed.error}")
st.navigation([
    st.Page("app_pages/classify.py", title="Classify", icon=":material/graphic_eq:", default=True),
    st.Page("app_pages/teach.py", title="Teach", icon=":material/school:"),
    st.Page("app_pages/inside.py", title="Inside the RNN", icon=":material/memory:"),
]).run()
