"""``python -m audioseq``: the same as the ``audioseq`` command."""

from .cli import main

main()
