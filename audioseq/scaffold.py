"""``audioseq new-plugin``: a ready-to-install plugin package with a working component.

The generated package is the smallest complete plugin: a pyproject with the ``audioseq``
entry point, one module registering a cell, feature or dataset through its hook, tests built on
``audioseq.testing`` and a README. docs/plugins.md shows these files verbatim; a test keeps the
two identical. Nothing here imports torch, so ``audioseq --help`` stays quick.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from string import Template

import click

from . import scaffold_templates as templates
from .errors import AudioseqError

KINDS = ("cell", "feature", "dataset")
# Lower case so the distribution, module and entry-point names agree; a leading letter so the
# derived class name is an identifier.
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


class ScaffoldError(AudioseqError):
    """A plugin name that is not allowed or already taken, or a folder that exists or cannot be made."""


def check_name(name: str) -> str:
    """Return ``name`` if it can name a plugin (``my-cell2``), else raise ``ScaffoldError``."""
    if not _NAME.fullmatch(name):
        raise ScaffoldError(
            f"plugin name {name!r} is not allowed: use lowercase letters, digits and single "
            "hyphens, starting with a letter (e.g. 'my-cell')"
        )
    return name


def package_name(name: str) -> str:
    """The import name of plugin ``name``: ``my-cell`` → ``audioseq_my_cell``."""
    return "audioseq_" + name.replace("-", "_")


def class_name(name: str, kind: str) -> str:
    """The example class of plugin ``name``: ``my-cell``, ``cell`` → ``MyCellCell``."""
    return "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()


def scaffold_plugin(name: str, kind: str, dest: Path) -> Path:
    """Create ``dest/audioseq-<name>/`` holding a plugin with a working ``kind`` and its tests.

    Raises ``ScaffoldError`` for a bad name or kind, an existing folder, a name that an
    installed plugin already registers for ``kind`` (two components of one name stop every
    plugin from loading), or a folder that cannot be written. Returns the new folder.
    """
    check_name(name)
    if kind not in KINDS:
        raise ScaffoldError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    dest = Path(dest)
    target = dest / f"audioseq-{name}"
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another name or --dir, or remove it")
    taken = _installed_as(name)
    if taken:
        raise ScaffoldError(f"{taken} is already installed; installing audioseq-{name} would replace or hide it, "
                            "so choose another name")
    from .plugins import get_component, list_components

    if name in list_components(kind):  # type: ignore[arg-type]
        owner = get_component(kind, name).plugin  # type: ignore[arg-type]
        raise ScaffoldError(f"{kind} {name!r} is already registered by plugin {owner!r}; choose another name")
    files = render(name, kind)
    # Written beside the target and renamed into place, so a failure leaves no half-made
    # folder that would block the next attempt.
    staging = dest / f".audioseq-{name}-{secrets.token_hex(4)}"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        os.rename(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ScaffoldError(f"cannot create {target}: {exc}") from exc
        raise
    return target


def _installed_as(name: str) -> str | None:
    """What installed package the plugin ``name`` would collide with: its distribution, its module or
    its entry point in the ``audioseq`` group (pluggy keeps one plugin per entry-point name)."""
    import importlib.metadata
    import importlib.util

    dist = f"audioseq-{name}"
    try:
        importlib.metadata.distribution(dist)
        return f"the distribution {dist!r}"
    except importlib.metadata.PackageNotFoundError:
        pass
    for ep in importlib.metadata.entry_points(group="audioseq"):
        if ep.name == name:
            owner = ep.dist.metadata["Name"] if getattr(ep, "dist", None) is not None else ep.value
            return f"the audioseq entry point {name!r} (of {owner})"
    if importlib.util.find_spec(package_name(name)) is not None:
        return f"the module {package_name(name)!r}"
    return None


def render(name: str, kind: str) -> dict[str, str]:
    """The files of plugin ``name`` of ``kind``, by path relative to the package folder."""
    from . import __version__

    package = package_name(name)
    values = {
        "name": name,
        "package": package,
        "dist": f"audioseq-{name}",
        "cls": class_name(name, kind),
        "version": __version__,
        "summary": Template(templates.SUMMARY[kind]).substitute(name=name),
    }
    values["usage"] = Template(templates.USAGE[kind]).substitute(values)
    return {
        "pyproject.toml": Template(templates.PYPROJECT).substitute(values),
        "README.md": Template(templates.README).substitute(values),
        f"{package}/__init__.py": Template(templates.MODULE[kind]).substitute(values),
        f"tests/test_{name.replace('-', '_')}.py": Template(templates.TESTS[kind]).substitute(values),
    }


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default="cell", show_default=True, help="What the plugin adds.")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="Folder in which to create audioseq-NAME/.",
)
def new_plugin(name: str, kind: str, directory: Path) -> None:
    """Create audioseq-NAME/: a plugin package with a working KIND, tests and a README."""
    try:
        check_name(name)
    except ScaffoldError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    try:
        target = scaffold_plugin(name, kind, directory)
    except AudioseqError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    click.echo(f"Created {target} with the {kind} {name!r}. Next:")
    click.echo(f"  cd {target}\n  pip install -e '.[test]'\n  pytest\n  audioseq plugins")
