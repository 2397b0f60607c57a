"""The folders a service may touch, and the check that keeps every path inside them.

A recipe submitted to the service is data from a user, so every path in it is
resolved (``..`` collapsed, symbolic links followed) and must land inside a
configured folder: sources inside the recipes or data folders, outputs inside the
outputs folder. Downloads go through the same check, so a symlink planted in an
output folder cannot reach outside it either. What a user is told names these
folders by their role (``outputs/job-3/data``), never by the server's absolute paths.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from synthforge.errors import SynthForgeError

#: the environment variables a submitted recipe's database URL may name
SERVICE_VARIABLES = "SYNTHFORGE_DB_"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class PathRefused(SynthForgeError):
    """A path outside the service's folders."""


@dataclass
class Folders:
    """Where a service reads recipes and data and writes outputs; all made absolute and real."""

    recipes: Path
    data: Path
    outputs: Path
    #: more folders sources may be read from (read-only data a team shares)
    extra_sources: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recipes, self.data, self.outputs = (Path(p).resolve() for p in (self.recipes, self.data, self.outputs))
        self.extra_sources = [Path(p).resolve() for p in self.extra_sources]
        for folder in (self.data / "uploads", self.recipes, self.outputs):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def readable(self) -> list[Path]:
        return [self.recipes, self.data, self.outputs, *self.extra_sources]

    @property
    def uploads(self) -> Path:
        return self.data / "uploads"

    def inside(self, path: Path, roots: list[Path], what: str, shown: str | Path | None = None) -> Path:
        """``path`` resolved (symlinks followed); refused unless it lies inside one of ``roots``. The refusal
        names the path as the user wrote it (``shown``), never where it resolves on the server."""
        real = Path(path).resolve()
        if not any(real == root or real.is_relative_to(root) for root in roots):
            allowed = ", ".join(self.label(root) for root in roots)
            written = self.describe(path) if shown is None else str(shown)
            raise PathRefused(f"{what} {written!r} is outside the service's folders ({allowed}), once '..' and "
                              f"symbolic links are followed.")
        return real

    def labelled(self) -> list[tuple[Path, str]]:
        """Each folder with the name users know it by, the deepest first (a folder may lie inside another)."""
        named = [(self.recipes, "recipes"), (self.data, "data"), (self.outputs, "outputs")]
        named += [(folder, f"source-folder-{i}") for i, folder in enumerate(self.extra_sources, start=1)]
        return sorted(named, key=lambda item: len(item[0].parts), reverse=True)

    def label(self, folder: Path) -> str:
        return next((name for root, name in self.labelled() if root == folder), folder.name)

    def describe(self, path: str | Path) -> str:
        """``path`` relative to the service folder it lies in (``outputs/job-3/data``); a path elsewhere by its
        last name only."""
        path = Path(path)
        if not path.is_absolute():
            return path.as_posix()
        for root, name in self.labelled():
            if path == root or path.is_relative_to(root):
                return (Path(name) / path.relative_to(root)).as_posix()
        return path.name

    def redact(self, text: str) -> str:
        """A message with every absolute path of the service's folders written relative to them."""
        for root, name in self.labelled():
            text = text.replace(str(root), name)
        return text

    def named_recipe(self, name: str) -> Path:
        """The recipe called ``name`` in the recipes folder (``adult-synthesize`` or ``adult-synthesize.yaml``)."""
        file = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
        if "/" in file or "\\" in file or not _SAFE_NAME.match(file):
            raise PathRefused(f"recipe name {name!r}: a file name in the recipes folder, without folders.")
        path = self.inside(self.recipes / file, [self.recipes], "recipe")
        if not path.is_file():
            raise SynthForgeError(f"there is no recipe {file!r} in the recipes folder; GET /api/v1/recipes lists them.")
        return path

    def list_recipes(self) -> list[str]:
        return sorted(p.name for p in self.recipes.glob("*.y*ml") if p.is_file() and not p.name.startswith("."))

    def save_submitted(self, text: str) -> Path:
        """Keep a recipe sent as text, in the recipes folder (hidden), so its relative paths read as a named
        recipe's do; it stays, as the record of what the job ran."""
        name = f".submitted-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}.yaml"
        path = self.recipes / name
        path.write_text(text)
        return path

    def upload_path(self, name: str, user: str, user_id: int) -> Path:
        """Where ``user``'s upload called ``name`` goes: their own folder under uploads, so no one's file is
        ever replaced by another user's of the same name (a name unsafe as a folder gets ``_user-<id>``,
        which no user name can collide with: names of folders here start with a letter or digit)."""
        if not _SAFE_NAME.match(name):
            raise PathRefused(f"file name {name!r}: letters, digits, '.', '_' and '-' only, no folders.")
        folder = self.uploads / (user if _SAFE_NAME.match(user) else f"_user-{user_id}")
        folder.mkdir(exist_ok=True)
        return folder / name

    def check_recipe(self, recipe: Any) -> None:
        """Every path a loaded recipe names must be inside the folders: sources readable, outputs in outputs."""
        for name, value in recipe_paths(recipe):
            resolved = recipe.resolve(value)
            if name == "output.path":
                self.inside(resolved, [self.outputs], f"recipe `{name}`", shown=value)
            else:
                self.inside(resolved, self.readable, f"recipe `{name}`", shown=value)
        for key, url in (("source.database", recipe.source.database), ("output.database", recipe.output.database)):
            if url is not None:
                self._check_database(recipe, key, url)

    def _check_database(self, recipe: Any, key: str, url: str) -> None:
        """A SQLite file inside the folders (a target inside the outputs); a URL's ``${VARIABLE}`` one of the
        service's ``SYNTHFORGE_DB_*``, so a submitted recipe cannot send another of its secrets to a host."""
        from synthforge.data.database import VARIABLE, database_file

        for variable in VARIABLE.findall(url):
            if not variable.startswith(SERVICE_VARIABLES):
                raise PathRefused(f"recipe `{key}` names ${{{variable}}}; the service gives a database URL only "
                                  f"its own {SERVICE_VARIABLES}* variables.")
        file = database_file(url, recipe.resolve(Path(".")))
        if file is not None:
            self.inside(file, [self.outputs] if key == "output.database" else self.readable, f"recipe `{key}`",
                        shown=file.name)


def recipe_paths(model: BaseModel, prefix: str = "") -> list[tuple[str, Path]]:
    """Every path field set in a recipe, by its dotted key (``source.tables.flights.path``)."""
    found: list[tuple[str, Path]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        found += _paths_in(value, f"{prefix}{name}")
    return found


def _paths_in(value: Any, key: str) -> list[tuple[str, Path]]:
    if isinstance(value, Path):
        return [(key, value)]
    if isinstance(value, BaseModel):
        return recipe_paths(value, key + ".")
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _paths_in(v, f"{key}.{k}")]
    if isinstance(value, list | tuple):
        return [item for i, v in enumerate(value) for item in _paths_in(v, f"{key}.{i}")]
    return []
