from __future__ import annotations

import re
from pathlib import Path

from synthforge.hookspecs import hook_names, render_hook_reference

DOCS = Path(__file__).parent.parent / "docs" / "plugins.md"


def test_every_hook_has_an_entry_in_the_plugin_author_docs():
    text = DOCS.read_text()
    for name in hook_names():
        assert f"### `{name}`" in text, f"docs/plugins.md lacks an entry for {name}"


def test_the_hook_reference_is_generated_from_the_hookspecs():
    section = re.search(r"<!-- hooks:start -->\n(.*)<!-- hooks:end -->", DOCS.read_text(), re.S)
    assert section and section.group(1) == render_hook_reference(), (
        "docs/plugins.md is out of date: run `python -m synthforge.hookspecs docs/plugins.md`")


def test_every_hook_is_documented_in_its_spec():
    from synthforge.hookspecs import describe_hooks

    for hook in describe_hooks():
        assert len(hook["doc"]) > 80, f"{hook['name']} needs a real docstring"
