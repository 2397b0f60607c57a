"""Every extension point of SynthForge.

A plugin is a module (or any object) with functions decorated by
:data:`synthforge.hookimpl` whose names match the hooks below. Plugins are found in
three places, in this order: the built-in plugins listed in
``synthforge.plugins.DEFAULT_PLUGINS``, the ``synthforge`` entry-point group of
installed distributions, and single ``.py`` files in a ``--plugins-dir``.

Collecting hooks (``synthforge_generators``, ``synthforge_checks``,
``synthforge_readers``, ``synthforge_writers``) are called on every plugin and their
lists are concatenated. Observer hooks (``synthforge_run_started``,
``synthforge_epoch_end``, ``synthforge_run_finished``) are called on every plugin for
their side effects; their return values are ignored.

A hook implementation may accept any subset of the arguments documented here, by
name; pluggy passes only those it asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from synthforge.checks.base import Check
    from synthforge.data.io import Reader, Writer
    from synthforge.engine import RunInfo, RunResult
    from synthforge.generator import Generator

hookspec = pluggy.HookspecMarker("synthforge")
#: Decorate a plugin's functions with this to implement the hooks below.
hookimpl = pluggy.HookimplMarker("synthforge")


@hookspec
def synthforge_generators() -> list[type[Generator]]:
    """Return the generator classes this plugin provides.

    Each class subclasses :class:`synthforge.Generator` (a torch model
    :class:`synthforge.nn.TorchGenerator`) and has a unique ``name`` (the string a
    recipe writes as ``generator: {name: ...}``). Two plugins that provide the same
    name are an error reported by ``synthforge plugins``; a class that defines one of
    the base class's reserved names fails when its module is imported, and the plugin
    is reported as broken.

    Called once each time a plugin manager is asked for its generators; do not do
    expensive work here (import torch inside ``fit``, not at module import).
    """


@hookspec
def synthforge_checks() -> list[type[Check]]:
    """Return the quality and privacy check classes this plugin provides.

    Each class subclasses :class:`synthforge.Check`, has a unique ``name``, a
    ``kind`` (``"quality"`` or ``"privacy"``) and a default gate. A recipe names
    checks under ``checks:``; checks with ``default = True`` run on every recipe
    that does not list checks of its own, and checks with ``mandatory = True`` (the
    privacy gates ``exact_copies`` and ``identifier_leak``) on every run, listed or
    not, unless the recipe names them with ``enabled: off`` (the report then says so).
    """


@hookspec
def synthforge_readers() -> list[Reader]:
    """Return table readers: objects with ``format``, ``extensions`` and ``read(path)``.

    A reader turns a file into a :class:`polars.DataFrame`. The recipe's
    ``source.format`` picks one by ``format``; without it, the file's extension
    picks the first reader that lists it.
    """


@hookspec
def synthforge_writers() -> list[Writer]:
    """Return table writers: objects with ``format``, ``extensions`` and ``open(path)``.

    ``open`` returns a sink with ``write(batch)`` and ``close()``, so that sampled
    batches stream to disk and memory stays flat for any row count. The engine
    always writes into a temporary folder that is renamed into place at the end,
    so a writer need not be atomic itself.
    """


@hookspec
def synthforge_run_started(run: RunInfo) -> None:
    """Called when a recipe run starts, after the recipe is validated.

    :param run: the run's id, recipe, seed and output path. Trackers and loggers
        start their record here.
    """


@hookspec
def synthforge_epoch_end(run: RunInfo, epoch: int, metrics: dict[str, float]) -> None:
    """Called by neural generators after every training epoch.

    :param run: the run in progress (``None`` when a generator is fitted outside a
        recipe run, for example through :func:`synthforge.fit`).
    :param epoch: the epoch just finished, counted from 1.
    :param metrics: the epoch's mean training losses and, where a validation split
        exists, ``val_loss``.
    """


@hookspec
def synthforge_progress(run: RunInfo, stage: str, done: int, total: int | None) -> None:
    """Called as a run advances: when each stage starts, and as the fit's epochs end.

    :param run: the run in progress (``None`` outside a recipe run).
    :param stage: ``load``, ``infer``, ``split``, ``fit``, ``sample``, ``checks``, ``report``, ``save``
        (a run of related tables reports them per table, as ``fit:orders``).
    :param done: steps of the stage done: 0 when it starts; epochs finished during ``fit``.
    :param total: the stage's steps when known (a neural fit's epochs), else ``None``. A dashboard draws a
        bar and an ETA from ``done / total`` and the time since the stage's ``done == 0`` call.
    """


@hookspec
def synthforge_run_finished(run: RunInfo, result: RunResult) -> None:
    """Called when a run ends, whether it succeeded or failed.

    :param run: the run that ended.
    :param result: its status (``"succeeded"`` or ``"failed"``), check results,
        timings, output paths and, on failure, the error message.
    """


def hook_names() -> list[str]:
    """The names of every hook defined above, in the order they are documented."""
    return [name for name, value in globals().items() if name.startswith("synthforge_") and callable(value)]


def describe_hooks() -> list[dict[str, Any]]:
    """Each hook's name, signature and documentation, for ``docs/plugins.md``."""
    import inspect

    described = []
    for name in hook_names():
        function = globals()[name]
        described.append(
            {
                "name": name,
                "signature": f"{name}{inspect.signature(function)}",
                "doc": inspect.cleandoc(function.__doc__ or ""),
            }
        )
    return described


def render_hook_reference() -> str:
    """The hook reference in ``docs/plugins.md``, generated from the docstrings above."""
    sections = []
    for hook in describe_hooks():
        signature = hook['signature'].replace("'", "")
        sections.append(f"### `{hook['name']}`\n\n```python\n{signature}\n```\n\n{hook['doc']}\n")
    return "\n".join(sections)


if __name__ == "__main__":  # python -m synthforge.hookspecs docs/plugins.md: refresh the hook reference
    import re
    import sys
    from pathlib import Path

    path = Path(sys.argv[1])
    text = path.read_text()
    fresh = f"<!-- hooks:start -->\n{render_hook_reference()}<!-- hooks:end -->"
    path.write_text(re.sub(r"<!-- hooks:start -->.*<!-- hooks:end -->", lambda _: fresh, text, flags=re.S))
