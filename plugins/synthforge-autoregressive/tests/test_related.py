"""The autoregressive plugin is sequence-aware: it runs the related-tables conformance check."""

from synthforge_autoregressive import AutoregressiveGenerator

from synthforge.testing import check_related_tables


def test_related_tables_conformance():
    check_related_tables(AutoregressiveGenerator, {"epochs": 20})
