"""Plugin manager and component registries.

Built-in components live in ``audioseq.default_plugins`` and register through the very same
hooks as third-party plugins found through the ``audioseq`` entry-point group.

Environment:
    AUDIOSEQ_LOAD_PLUGINS: comma-separated entry-point names to load (empty: none).
    AUDIOSEQ_STRICT_PLUGINS=1: a plugin that fails to import or whose hook raises is fatal.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Literal

import pluggy

from . import hookspecs
from .errors import ParameterError, PluginError, UnknownComponentError
from .params import Param, complete, declared_params, validate

Kind = Literal["cell", "feature", "dataset", "model"]
KINDS: tuple[Kind, ...] = ("cell", "feature", "dataset", "model")
_HOOKS: dict[Kind, str] = {
    "cell": "register_cells",
    "feature": "register_features",
    "dataset": "register_datasets",
    "model": "register_models",
}
_POSITIONAL: dict[Kind, int] = {"cell": 2, "feature": 1, "dataset": 1}

DEFAULT_PLUGINS = (
    "audioseq.default_plugins.cells",
    "audioseq.default_plugins.features",
    "audioseq.default_plugins.datasets",
    "audioseq.default_plugins.models",
)


@dataclasses.dataclass(frozen=True)
class Component:
    """A registered cell, feature or dataset (``factory``), or a ready-trained model (``path``)."""

    kind: Kind
    name: str
    factory: Callable[..., Any] | None
    plugin: str
    params: tuple[Param, ...]
    path: Path | None = None

    @property
    def doc(self) -> str:
        if self.path is not None:  # a model: its card's (NAME.md beside it) first sentence
            return _card_summary(self.path.with_suffix(".md"))
        text = (getattr(self.factory, "__doc__", None) or "").strip()
        # Its first line, with reST's ``code`` as Markdown's `code` (the app renders Markdown).
        return text.splitlines()[0].replace("``", "`") if text else ""

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "doc": self.doc,
            "params": [p.to_json() for p in self.params],
        }
        if self.path is not None:
            out["path"] = str(self.path)
        return out


def _card_summary(card: Path) -> str:
    """The first sentence (up to ``. `` or ``: ``) of a model card's first paragraph."""
    if not card.is_file():
        return ""
    paragraph: list[str] = []
    for line in card.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() and not line.startswith("#"):
            paragraph.append(line.strip())
        elif paragraph:
            break
    text = " ".join(paragraph)
    return re.split(r"(?<=\.) |: ", text, maxsplit=1)[0]


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a component's name: one word on a command line


def _component(kind: Kind, name: Any, what: Any, plugin: str) -> Component:
    """The registry entry for ``register(name, what)`` from ``plugin``; PluginError if unusable."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise PluginError(f"plugin {plugin!r} registered a {kind} named {name!r}; a name is letters, digits, "
                          "'-', '_' and '.', starting with a letter or digit")
    if kind != "model":
        if not callable(what):
            raise PluginError(f"plugin {plugin!r} registered {kind} {name!r} as {what!r}, which is not callable; "
                              f"register the class or function that builds it")
        try:
            params = declared_params(what, _POSITIONAL[kind])
        except ParameterError as exc:
            raise PluginError(f"{kind} {name!r}: {exc}") from exc
        return Component(kind, name, what, plugin, tuple(params))
    if not isinstance(what, (str, os.PathLike)) or not Path(what).is_file():
        raise PluginError(f"plugin {plugin!r} registered model {name!r} at {what!r}, which is not a file")
    return Component(kind, name, None, plugin, (), Path(what).resolve())


@dataclasses.dataclass
class BrokenPlugin:
    name: str
    error: str
    hook: bool = False  # a hook failed while the registry was built (redone on every rebuild), not the import


pm = pluggy.PluginManager("audioseq")
pm.add_hookspecs(hookspecs)

_state: dict[str, Any] = {"loaded": False, "registry": None}
broken: list[BrokenPlugin] = []
_dists: dict[str, tuple[str, str]] = {}  # entry-point name -> (distribution, version)


def _strict() -> bool:
    return os.environ.get("AUDIOSEQ_STRICT_PLUGINS", "").strip().lower() not in ("", "0", "false", "no", "off")


def _fail(name: str, exc: BaseException, what: str, hook: bool = False) -> None:
    message = f"{type(exc).__name__}: {exc}"
    if _strict():
        raise PluginError(f"plugin {name!r} {what}: {message}") from exc
    broken.append(BrokenPlugin(name, message, hook))
    # Attributed to the plugin rather than to a line of audioseq, which would say nothing to its reader.
    warnings.warn_explicit(f"audioseq: skipping plugin {name!r}, {what}: {message}", UserWarning,
                           filename=f"<audioseq plugin {name!r}>", lineno=0, module="audioseq.plugins")


def _hooks_error(plugin: object) -> str | None:
    """What is wrong with a registered plugin's hooks: a name that is not a hook (a typo), or none at all."""
    callers = pm.get_hookcallers(plugin) or []
    known = ", ".join(_HOOKS.values())
    unknown = sorted(c.name for c in callers if not c.has_spec())
    if unknown:
        return f"unknown hook {', '.join(map(repr, unknown))}; the hooks are {known}"
    if not callers:
        return f"it implements none of the hooks ({known}); each needs the @audioseq.hookimpl decorator"
    return None


def load_plugins() -> None:
    """Register entry-point plugins, then the default plugins. Idempotent."""
    if _state["loaded"]:
        return
    _state["loaded"] = True
    wanted = os.environ.get("AUDIOSEQ_LOAD_PLUGINS")
    allow = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    eps = [ep for ep in importlib.metadata.entry_points(group="audioseq") if allow is None or ep.name in allow]
    clashing = _declared_twice(eps)
    for name, where in clashing.items():
        if pm.get_plugin(name) is None:
            if _strict():
                _state["loaded"] = False  # fail again on the next lookup, as for a plugin that fails to import
            _fail(name, PluginError(f"entry point {name!r} is declared by {' and by '.join(where)}; rename one "
                                    "of them"), "failed to load")
    for ep in eps:
        if ep.name in clashing:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        dist = getattr(ep, "dist", None)
        if dist is not None:
            _dists[ep.name] = (dist.metadata["Name"], dist.version)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
            problem = _hooks_error(module)
            if problem is not None:
                pm.unregister(module)
                raise PluginError(problem)
        except Exception as exc:
            if _strict():
                _state["loaded"] = False  # fail again on the next lookup instead of loading without it
            _fail(ep.name, exc, "failed to load")
    if allow is not None and (unknown := allow - {ep.name for ep in importlib.metadata.entry_points(group="audioseq")}):
        warnings.warn(f"audioseq: AUDIOSEQ_LOAD_PLUGINS names {', '.join(sorted(unknown))}, which no installed "
                      "plugin declares as its entry point (see `audioseq plugins`)", UserWarning, stacklevel=2)
    for module_name in DEFAULT_PLUGINS:
        if pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)


def _declared_twice(eps: list[importlib.metadata.EntryPoint]) -> dict[str, list[str]]:
    """Entry-point names that two packages declare, each with what both point to. pluggy keeps one
    plugin per name, so one of them would vanish without a word: neither is loaded, both are named."""
    targets: dict[str, list[str]] = {}
    for ep in eps:
        dist = getattr(ep, "dist", None)
        where = f"{ep.value} ({dist.metadata['Name'] if dist is not None else 'unknown distribution'})"
        if where not in targets.setdefault(ep.name, []):
            targets[ep.name].append(where)
    return {name: where for name, where in targets.items() if len(where) > 1}


def _distribution(plugin: str) -> tuple[str, str] | None:
    """The distribution (name, version) that installed a plugin; the default plugins are audioseq's."""
    if plugin in _dists:
        return _dists[plugin]
    if plugin.startswith("audioseq."):
        from . import __version__

        return "audioseq", __version__
    return None


def plugin_version(name: str) -> str | None:
    dist = _distribution(name)
    return dist[1] if dist else None


def provider(kind: Kind, name: str) -> dict[str, str]:
    """Who gives a registered component: ``plugin`` (its entry point, or the default plugin's module)
    and, when known, the ``distribution`` to install and its ``version``. Stored in model files, so
    that a model whose plugin is missing can say what to install."""
    plugin = get_component(kind, name).plugin
    dist = _distribution(plugin)
    return {"plugin": plugin} if dist is None else {"plugin": plugin, "distribution": dist[0], "version": dist[1]}


def _build() -> dict[Kind, dict[str, Component]]:
    """Call every plugin's hooks, then keep the components of each plugin whose hooks all returned:
    a plugin with a failing hook is skipped whole, not left half registered."""
    load_plugins()
    broken[:] = [b for b in broken if not b.hook]  # this build reports the hooks that fail now, once each
    offered: list[Component] = []
    failed: set[str] = set()
    for kind in KINDS:
        hook = getattr(pm.hook, _HOOKS[kind])
        for impl in reversed(hook.get_hookimpls()):
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            added: list[Component] = []

            def register(name: str, factory: Any, _p: str = plugin_name, _k: Kind = kind,
                         _added: list[Component] = added) -> None:
                if any(c.name == name for c in _added):
                    raise PluginError(f"it registers {_k} {name!r} twice")
                _added.append(_component(_k, name, factory, _p))

            try:
                impl.function(register=register)
            except PluginError as exc:
                failed.add(plugin_name)
                _fail(plugin_name, exc, f"hook {_HOOKS[kind]} failed", hook=True)
            except Exception as exc:
                failed.add(plugin_name)
                _fail(plugin_name, exc, f"hook {_HOOKS[kind]} raised", hook=True)
            offered.extend(added)
    registry: dict[Kind, dict[str, Component]] = {k: {} for k in KINDS}
    for component in offered:
        if component.plugin in failed:
            continue
        existing = registry[component.kind].get(component.name)
        if existing is not None:
            raise PluginError(
                f"{component.kind} {component.name!r} is registered twice: by plugin {existing.plugin!r} and by "
                f"plugin {component.plugin!r}; uninstall one of them, or leave one out with "
                "AUDIOSEQ_LOAD_PLUGINS=<the entry points to load>"
            )
        registry[component.kind][component.name] = component
    return registry


def registry() -> dict[Kind, dict[str, Component]]:
    if _state["registry"] is None:
        _state["registry"] = _build()
    return _state["registry"]


def refresh() -> None:
    """Forget the built registries, so plugins registered with ``pm.register`` are seen."""
    _state["registry"] = None


def get_component(kind: Kind, name: str) -> Component:
    table = registry()[kind]
    if name not in table:
        raise UnknownComponentError(kind, name, table, broken={b.name: b.error for b in broken})
    return table[name]


def build(kind: Kind, name: str, *args: Any, params: dict[str, Any] | None = None) -> Any:
    """Construct a registered component with validated, converted parameters."""
    component = get_component(kind, name)
    kwargs = validate(component.params, params or {}, f"{kind} {name!r}")
    return component.factory(*args, **kwargs)


def resolved_params(kind: Kind, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every parameter of a registered component, defaults included, as a model file stores them."""
    component = get_component(kind, name)
    return complete(component.params, params or {}, f"{kind} {name!r}")


def origin(component: object) -> str:
    """How an error names a built cell or feature: its registered name and plugin, else its class."""
    for kind in ("cell", "feature"):
        for entry in registry()[kind].values():
            if entry.factory is type(component):
                return f"{kind} {entry.name!r} (plugin {entry.plugin!r})"
    return f"{type(component).__module__}.{type(component).__qualname__}"


def list_components(kind: Kind) -> list[str]:
    return sorted(registry()[kind])


def component_params(kind: Kind, name: str) -> list[Param]:
    """The typed parameters of a component: what the CLI accepts and the app draws as widgets."""
    return list(get_component(kind, name).params)


def plugins_info() -> list[dict[str, Any]]:
    """Every loaded plugin with its version, hooks and components, then broken plugins."""
    reg = registry()
    out = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        components = [
            c.to_json() for kind in KINDS for c in reg[kind].values() if c.plugin == name
        ]
        out.append(
            {"name": name, "version": plugin_version(name), "hooks": hooks,
             "components": components, "error": None}
        )
    for b in broken:
        if not any(p["name"] == b.name for p in out):
            out.append({"name": b.name, "version": plugin_version(b.name), "hooks": [],
                        "components": [], "error": b.error})
        else:
            for p in out:
                if p["name"] == b.name:
                    p["error"] = b.error
    return sorted(out, key=lambda p: (p["name"].startswith("audioseq."), p["name"]))
