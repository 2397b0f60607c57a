"""The README's command blocks, run as written: each in a new shell that has done the set-up's activation.

A block is run unless the line before it says ``<!-- readme-test: not run (why) -->`` (it installs,
or needs a PostgreSQL server or a Ray cluster, or trains for minutes). Those are checked instead:
valid bash, every command exists, and every ``synthforge`` subcommand and ``--option`` is in its
``--help``. The blocks run in order in one scratch folder holding the recipes, as a user's clone would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<language>bash|python)\n(?P<body>.*?)```",
                   re.S)
SHELL_WORDS = {".", "export", "cd", "source", "echo"}


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """(language, body, why it is not run) for every bash and python block, in order."""
    return [(m["language"], m["body"], m["mark"]) for m in BLOCK.finditer(README.read_text())]


def commands(body: str) -> list[str]:
    """A block's commands: continuation lines joined, comments and blank lines left out."""
    joined = body.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(line)
    return lines


def _activation() -> str:
    """The activation line the README's set-up tells a new shell to run."""
    for language, body, _ in readme_blocks():
        if language == "bash" and commands(body) == [". .venv/bin/activate"]:
            return commands(body)[0]
    raise AssertionError("the README no longer says how to activate .venv in a new shell")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A scratch clone: the recipes and their data, and links to the set-up's .venv and scripts."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "recipes", folder / "recipes", ignore=shutil.ignore_patterns("out"))
    (folder / "scripts").symlink_to(ROOT / "scripts")
    (folder / ".venv").symlink_to(VENV_BIN.parent)
    return folder


def _environment(folder: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("SYNTHFORGE_", "VIRTUAL_ENV", "PYTEST_"))}
    # A new shell: the venv is not on PATH until the activation line puts it there.
    environment["PATH"] = os.pathsep.join(part for part in environment.get("PATH", "").split(os.pathsep)
                                          if Path(part).resolve() != VENV_BIN.resolve())
    environment["HOME"] = str(folder)
    return environment


def test_every_block_is_either_run_or_says_why_not():
    blocks = readme_blocks()
    assert len(blocks) >= 8
    run = [body for language, body, mark in blocks if mark is None]
    assert len(run) >= 3, "the Use, Python and Jobs blocks run"
    for _, _, mark in blocks:
        assert mark is None or re.fullmatch(r"not run \(.+\)", mark), mark


def test_a_new_shell_without_the_activation_has_no_synthforge(workspace):
    done = subprocess.run(["bash", "-c", "command -v synthforge"], cwd=workspace, env=_environment(workspace),
                          capture_output=True, text=True)
    activated = subprocess.run(["bash", "-c", f"{_activation()} && command -v synthforge"], cwd=workspace,
                               env=_environment(workspace), capture_output=True, text=True)
    assert done.returncode != 0 or Path(done.stdout.strip()).parent != VENV_BIN
    assert activated.returncode == 0, activated.stderr


@pytest.mark.slow
def test_the_readme_blocks_run_as_written_in_a_new_shell(workspace):
    activation = _activation()
    environment = _environment(workspace)
    for index, (language, body, mark) in enumerate(readme_blocks()):
        if mark is not None:
            continue
        if language == "python":
            script = workspace / f"readme-block-{index}.py"
            script.write_text(body)
            command = f"{activation} && python {script.name}"
        else:
            command = f"{activation}\nset -euo pipefail\n{body}"
        done = subprocess.run(["bash", "-c", command], cwd=workspace, env=environment, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"README block {index} failed:\n{body}\n--- stdout\n{done.stdout[-3000:]}" \
                                     f"\n--- stderr\n{done.stderr[-3000:]}"
    assert (workspace / "out" / "adult-synthesize" / "data.csv").exists()
    assert (workspace / "more.parquet").exists() and (workspace / "report" / "report.html").exists()
    assert (workspace / "recipe.schema.json").read_text().startswith("{")


def _synthforge_help(words: list[str]) -> str:
    """The --help of the deepest subcommand that ``words`` names (``jobs show``, ``run``, …)."""
    path: list[str] = []
    text = ""
    for word in words:
        if word.startswith("-"):
            break
        done = subprocess.run([str(VENV_BIN / "synthforge"), *path, word, "--help"], capture_output=True, text=True)
        if done.returncode != 0:
            break
        path.append(word)
        text = done.stdout
    assert path, f"`synthforge {' '.join(words)}`: no such command"
    return text


def test_the_blocks_that_are_not_run_are_valid_commands(workspace):
    for language, body, mark in readme_blocks():
        if mark is None or language != "bash":
            continue
        check = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
        assert check.returncode == 0, f"not valid bash:\n{body}\n{check.stderr}"
        for line in commands(body):
            for part in re.split(r"\|\||&&|\||;", line):
                words = [word for word in shlex.split(part, comments=True) if "=" not in word.split("/")[0]
                         or word.startswith("-")]
                if not words:
                    continue
                program = words[0]
                if program in SHELL_WORDS:
                    continue
                found = (shutil.which(program, path=str(VENV_BIN)) or shutil.which(program)
                         or (ROOT / program).is_file())
                assert found, f"`{program}` in the README is not a command: {line}"
                if program == "synthforge":
                    help_text = _synthforge_help(words[1:])
                    for option in (word.split("=")[0] for word in words if word.startswith("--")):
                        assert option in help_text, f"`{line}`: {option} is not an option of that command"
