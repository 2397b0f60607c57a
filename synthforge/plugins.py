"""The plugin manager: built-in plugins, then entry points, then a plugins folder.

Build one with :func:`get_plugin_manager` wherever plugins are needed; there is no
global registry, so tests and notebooks can build managers with exactly the plugins
they want. A plugin that fails to import, or that declares a SynthForge version it
is not compatible with, is recorded in ``pm.load_errors`` and shown by
``synthforge plugins``; the other plugins keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from synthforge import hookspecs
from synthforge.errors import PluginError
from synthforge.provenance import own_version

if TYPE_CHECKING:
    from synthforge.checks.base import Check
    from synthforge.data.io import Reader, Writer
    from synthforge.generator import Generator

ENTRY_POINT_GROUP = "synthforge"
DISABLE_ENV_VAR = "SYNTHFORGE_DISABLE_PLUGINS"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "synthforge.data.io",
    "synthforge.baseline",
    "synthforge.checks.builtin",
    "synthforge.checks.suite",
    "synthforge.checks.relational",
    "synthforge.checks.images",
)


@dataclass
class PluginLoadError:
    """A plugin that could not be used, and why."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    kind: str = "import"  # "import" | "incompatible" | "hook"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "error": self.error,
            "kind": self.kind,
        }


@dataclass
class PluginSource:
    """Where a registered plugin came from."""

    name: str
    origin: str  # "builtin" | "entrypoint" | "plugins-dir" | "registered"
    distribution: str | None = None
    version: str | None = None


class SynthForgePluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where plugins came from and what failed."""

    def __init__(self) -> None:
        super().__init__("synthforge")
        self.add_hookspecs(hookspecs)
        self.load_errors: list[PluginLoadError] = []
        self.sources: dict[str, PluginSource] = {}

    def register_plugin(self, plugin: Any, name: str | None = None, *, origin: str = "registered",
                        distribution: str | None = None, version: str | None = None) -> str:
        """Register ``plugin`` and remember its origin; returns the name it got."""
        registered = self.register(plugin, name=name)
        assert registered is not None, "register returns None only for blocked plugins"
        self.sources[registered] = PluginSource(registered, origin, distribution, version)
        return registered

    # --- what the plugins provide -------------------------------------------------

    def generators(self) -> dict[str, type[Generator]]:
        """Every generator class by name; two plugins providing one name is an error."""
        return _collect_by_name(self, "synthforge_generators", "generator")

    def checks(self) -> dict[str, type[Check]]:
        """Every check class by name."""
        return _collect_by_name(self, "synthforge_checks", "check")

    def readers(self) -> list[Reader]:
        return [reader for readers in self.hook.synthforge_readers() for reader in readers]

    def writers(self) -> list[Writer]:
        return [writer for writers in self.hook.synthforge_writers() for writer in writers]

    def get_generator(self, name: str) -> type[Generator]:
        generators = self.generators()
        if name not in generators:
            raise PluginError(unknown_name_message("generator", name, generators, self))
        return generators[name]

    def get_check(self, name: str) -> type[Check]:
        checks = self.checks()
        if name not in checks:
            raise PluginError(unknown_name_message("check", name, checks, self))
        return checks[name]

    # --- description, for `synthforge plugins` ------------------------------------

    def describe(self) -> dict[str, Any]:
        """Each plugin with its origin, version, hooks and what it provides."""
        plugins = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            source = self.sources.get(name, PluginSource(name, "registered"))
            provided: dict[str, list[str]] = {"generators": [], "checks": []}
            for hook_name, key in (("synthforge_generators", "generators"), ("synthforge_checks", "checks")):
                for plugin_name, classes in _provided(self, hook_name):
                    if plugin_name == name:
                        provided[key] = sorted(cls.name for cls in classes)
            plugins.append(
                {
                    "name": name,
                    "origin": source.origin,
                    "distribution": source.distribution,
                    "version": source.version,
                    "hooks": sorted(caller.name for caller in self.get_hookcallers(plugin) or []),
                    **provided,
                }
            )
        return {"plugins": plugins, "errors": [error.as_dict() for error in self.load_errors]}


def get_plugin_manager(
    *,
    entry_points: bool = True,
    plugins_dir: str | Path | None = None,
    disabled: list[str] | None = None,
    extra_plugins: list[Any] | None = None,
) -> SynthForgePluginManager:
    """Build a plugin manager: built-ins, entry points, a plugins folder, extras.

    :param entry_points: load installed plugins from the ``synthforge`` entry-point
        group. Tests that want only in-test plugins pass ``False``.
    :param plugins_dir: a folder whose ``*.py`` files are each loaded as a plugin,
        like datasette's ``--plugins-dir``.
    :param disabled: plugin names not to load; ``"all"`` disables every entry point.
        ``SYNTHFORGE_DISABLE_PLUGINS=name,other`` adds to this list.
    :param extra_plugins: objects registered last (in-process plugins).
    """
    disabled_names = set(disabled or [])
    disabled_names |= {name.strip() for name in os.environ.get(DISABLE_ENV_VAR, "").split(",") if name.strip()}

    pm = SynthForgePluginManager()
    for module_name in DEFAULT_PLUGINS:
        if module_name not in disabled_names:
            pm.register_plugin(importlib.import_module(module_name), module_name, origin="builtin",
                               distribution="synthforge", version=own_version())
    if entry_points and "all" not in disabled_names:
        _load_entry_points(pm, disabled_names)
    if plugins_dir is not None:
        _load_plugins_dir(pm, Path(plugins_dir), disabled_names)
    for plugin in extra_plugins or []:
        pm.register_plugin(plugin)
    pm.check_pending()
    return pm


def _load_entry_points(pm: SynthForgePluginManager, disabled: set[str]) -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in disabled or pm.has_plugin(entry_point.name):
            continue
        distribution = entry_point.dist.name if entry_point.dist else None
        version = entry_point.dist.version if entry_point.dist else None
        incompatibility = _incompatibility(entry_point.dist)
        if incompatibility:
            pm.load_errors.append(PluginLoadError(entry_point.name, distribution, version, incompatibility,
                                                  kind="incompatible"))
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken plugin must not take the others down
            pm.load_errors.append(PluginLoadError(entry_point.name, distribution, version, _describe(error)))
            continue
        try:
            pm.register_plugin(plugin, entry_point.name, origin="entrypoint", distribution=distribution,
                               version=version)
        except Exception as error:
            pm.load_errors.append(PluginLoadError(entry_point.name, distribution, version, _describe(error),
                                                  kind="hook"))


def _load_plugins_dir(pm: SynthForgePluginManager, folder: Path, disabled: set[str]) -> None:
    if not folder.is_dir():
        raise PluginError(f"--plugins-dir {folder} is not a folder.")
    for path in sorted(folder.glob("*.py")):
        name = path.stem
        if name in disabled or pm.has_plugin(name):
            continue
        spec = importlib.util.spec_from_file_location(f"synthforge_local_plugins.{name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        try:
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            pm.register_plugin(module, name, origin="plugins-dir", distribution=str(path))
        except Exception as error:
            sys.modules.pop(spec.name, None)
            pm.load_errors.append(PluginLoadError(name, str(path), None, _describe(error)))


def _incompatibility(distribution: importlib.metadata.Distribution | None) -> str | None:
    """Why ``distribution`` cannot run with this SynthForge, or None if it can."""
    if distribution is None:
        return None
    from packaging.requirements import InvalidRequirement, Requirement

    for line in distribution.requires or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.name.lower() != "synthforge" or requirement.marker is not None:
            continue
        own = own_version()
        if requirement.specifier and not requirement.specifier.contains(own, prereleases=True):
            return (f"requires synthforge{requirement.specifier} but synthforge {own} is installed; "
                    f"upgrade one of the two (pip install -U {distribution.name}).")
    return None


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def _provided(pm: SynthForgePluginManager, hook_name: str) -> list[tuple[str, list[Any]]]:
    """(plugin name, classes) from each implementation of a collecting hook, through ``pm.hook``.

    The hook's implementations, not attributes of plugin objects: a plugin's other attributes of the
    same name are never called, and a hookimpl with ``specname`` is found under the hook's name.
    """
    caller = getattr(pm.hook, hook_name)
    return [(implementation.plugin_name, list(implementation.function() or []))
            for implementation in caller.get_hookimpls()]


def _collect_by_name(pm: SynthForgePluginManager, hook_name: str, what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for plugin_name, classes in _provided(pm, hook_name):
        for cls in classes:
            name = getattr(cls, "name", None)
            if not name:
                raise PluginError(f"plugin {plugin_name!r} provides a {what} class {cls!r} with no `name`.")
            if name in found and found[name] is not cls:
                raise PluginError(
                    f"two plugins provide a {what} named {name!r}: {owners[name]!r} and {plugin_name!r}. "
                    f"Uninstall one, or disable it with {DISABLE_ENV_VAR}={plugin_name}."
                )
            found[name] = cls
            owners[name] = plugin_name
    return found


def unknown_name_message(what: str, name: str, known: dict[str, Any], pm: SynthForgePluginManager) -> str:
    import difflib

    suggestion = difflib.get_close_matches(name, list(known), n=1)
    hint = f" Did you mean {suggestion[0]!r}?" if suggestion else ""
    installed = ", ".join(sorted(known)) or "none"
    broken = ""
    if pm.load_errors:
        broken = " Plugins that failed to load: " + "; ".join(f"{e.name} ({e.error})" for e in pm.load_errors) + "."
    return (f"unknown {what} {name!r}.{hint} Installed {what}s: {installed}.{broken} "
            f"Run `synthforge plugins` to see every plugin.")
