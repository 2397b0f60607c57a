"""What a run may replace: only a folder SynthForge wrote, never one that holds anything else.

Every output is built in a hidden staging folder and renamed into place (:func:`synthforge.data.io.
replace_atomically`); an existing destination is swapped out and removed. That removal must never take
a user's files with it: an ``output.path`` of ``.`` once replaced the recipe's own folder, source and
notes included. So every folder SynthForge writes carries a mark naming what it wrote, and a
destination is replaced only when it is absent, empty, or marked and holding nothing but what the
mark names. Outputs written before the mark existed are recognised by their manifest and by holding
only the names SynthForge writes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from synthforge.errors import SynthForgeError

#: the file in every output folder that says SynthForge wrote it, and what it wrote
MARK = ".synthforge-output.json"

# Names an output folder of a version before the mark could hold (run, related tables, partitions, reports).
_LEGACY_NAMES = re.compile(r"^(manifest\.json|model|report\.json|report\.html|data\.[A-Za-z0-9]+|"
                           r"part-\d+\.parquet)$")


class OutputRefused(SynthForgeError):
    """An output path that a run would have to delete something it did not write to use."""


def mark_owned(folder: Path, kind: str = "output") -> None:
    """Record in ``folder`` that SynthForge wrote it, with the names it holds now (call it last)."""
    entries = sorted(p.name for p in folder.iterdir() if p.name != MARK)
    (folder / MARK).write_text(json.dumps({"written_by": "synthforge", "kind": kind, "entries": entries}, indent=1))


def check_destination(destination: Path, protected: Iterable[tuple[str, Path]] = (), *,
                      what: str = "the output path") -> None:
    """Raise :class:`OutputRefused` unless replacing ``destination`` whole loses nothing.

    ``protected`` names the run's inputs (``("the recipe", path)``, ``("source", path)``): a destination
    that is one of them or holds one is refused even when it is empty otherwise. A file, a link, or a
    folder with anything SynthForge did not write is refused; nothing is ever deleted to make room.
    """
    shown = _shown(destination)
    target = destination.resolve()
    for role, path in protected:
        resolved = Path(path).resolve()
        if resolved == target or target in resolved.parents:
            raise OutputRefused(
                f"{what} {shown} holds {role} ({_shown(Path(path))}): a run replaces its output folder whole, "
                "so it would delete it. Give the output a folder of its own (e.g. `output: {path: out/my-run}`).")
    if destination.is_symlink():
        raise OutputRefused(f"{what} {shown} is a symbolic link; SynthForge replaces only folders it wrote. "
                            "Name a new folder, or remove the link yourself.")
    if not destination.exists():
        return
    if not destination.is_dir():
        raise OutputRefused(f"{what} {shown} is a file that SynthForge did not write as an output folder; "
                            "it is left as it is. Name a new folder, or move the file away yourself.")
    foreign = foreign_entries(destination)
    if foreign:
        listed = ", ".join(sorted(foreign)[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputRefused(
            f"{what} {shown} holds files SynthForge did not write ({listed}); a run never replaces a folder "
            "that holds anything else. Choose a new folder for the output, or move those files away yourself.")


def check_file_destination(path: Path, protected: Iterable[tuple[str, Path]] = (), *, overwrite: bool,
                           what: str = "--out") -> None:
    """Raise :class:`OutputRefused` unless a file may be written at ``path``: absent, or a file replaced on
    purpose (``overwrite``) that is none of the command's inputs."""
    shown = _shown(path)
    for role, input_path in protected:
        if Path(input_path).resolve() == path.resolve():
            raise OutputRefused(f"{what} {shown} is {role}; write the output to a new file.")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputRefused(f"{what} {shown} is {'a link' if path.is_symlink() else 'a folder'}; "
                            "name a new file for the output.")
    if path.exists() and not overwrite:
        raise OutputRefused(f"{what} {shown} exists; pass --overwrite to replace it, or name a new file.")


def foreign_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that SynthForge did not write there (all of them for an unmarked, unknown folder)."""
    present = {p.name for p in folder.iterdir()}
    return sorted(present - _written_entries(folder, present) - {MARK}) if present else []


def _written_entries(folder: Path, present: set[str]) -> set[str]:
    """What SynthForge wrote in ``folder`` (holding ``present``): the names its mark lists, or, before the mark
    existed, the names its manifest and SynthForge's own file names account for."""
    if MARK in present:
        try:
            recorded = json.loads((folder / MARK).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        written = isinstance(recorded, dict) and recorded.get("written_by") == "synthforge"
        return {str(name) for name in recorded.get("entries", [])} if written else set()
    if "manifest.json" in present:
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        if not isinstance(manifest, dict) or not ({"run_id", "parts", "tables"} & manifest.keys()):
            return set()
        tables = manifest.get("tables")  # a related-tables run: table name → its file
        files = {str(file) for file in tables.values()} if isinstance(tables, dict) else set()
        return {name for name in present if _LEGACY_NAMES.match(name) or name in files}
    return present if present <= {"report.json", "report.html"} else set()  # a failed run's reports


def _shown(path: Path) -> str:
    """A path as the user gave it, relative to the working folder where it is inside it."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(relative) if str(relative) != "." else ". (the working folder)"
