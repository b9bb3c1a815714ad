"""``audioseq app``: start the Streamlit app (an optional extra) on the ready-trained models."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click


def app_root() -> Path:
    """The folder holding ``ui/`` and ``.streamlit/``: the parent of the package folder.

    Raises:
        click.ClickException: ``ui/app.py`` is not there (an install without the app).
    """
    from . import __file__ as package_init

    root = Path(package_init).resolve().parents[1]
    if not (root / "ui" / "app.py").is_file():
        raise click.ClickException(
            f"the app is not installed: {root / 'ui' / 'app.py'} is missing. "
            "Run `audioseq app` from a source checkout (pip install -e '.[app]')."
        )
    return root


@click.command()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--address", default="localhost", show_default=True,
              help="Interface to serve on: this machine only by default; 0.0.0.0 lets other machines in "
                   "(they can then train models here, and browsers allow the microphone only over HTTPS).")
@click.option(
    "--models",
    "models_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False, resolve_path=True),
    help="Folder of .safetensors models to offer besides the ready-trained ones.",
)
def app(port: int, address: str, models_dir: str | None) -> None:
    """Start the web app: classify clips, teach a recurrent network, look inside it.

    It serves http://localhost:8501 (open it in a browser; Ctrl-C stops the app)."""
    if importlib.util.find_spec("streamlit") is None:
        raise click.ClickException("the app needs Streamlit: pip install 'audioseq[app]'")
    root = app_root()
    command = [
        sys.executable, "-m", "streamlit", "run", str(root / "ui" / "app.py"),
        "--server.port", str(port), "--server.address", address, "--server.headless", "true",
    ]
    if models_dir is not None:
        command += ["--", "--models", models_dir]
    # Streamlit reads .streamlit/config.toml from its working directory: the upload limit,
    # XSRF protection and hidden error details live there.
    server = subprocess.Popen(command, cwd=root)

    def stop(signum: int, frame: Any) -> None:
        server.terminate()

    # A supervisor that stops this process with SIGTERM must not leave the server running.
    signal.signal(signal.SIGTERM, stop)
    try:
        code = server.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server too; let it shut down cleanly
        code = server.wait()
    sys.exit(code)
