"""Bilingual texts (siegel.Text): built with keyword arguments and formatted in both languages."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siegel import Text


def test_format_fills_both_languages_and_texts_in_their_own_language() -> None:
    template = Text(de="Regel {rule!r}: {what} gefunden", en="rule {rule!r}: {what} found")
    what = Text(de="Kundennummer", en="customer number")
    assert template.format(rule="kunde", what=what) == Text(
        de="Regel 'kunde': Kundennummer gefunden", en="rule 'kunde': customer number found")


@given(st.text())
def test_values_are_never_read_as_templates(value: str) -> None:
    assert Text(de="<{v}>", en="[{v}]").format(v=value) == Text(de=f"<{value}>", en=f"[{value}]")


def test_a_missing_field_names_it() -> None:
    with pytest.raises(KeyError, match="count"):
        Text(de="{count} Teile", en="{count} parts").format()


def test_the_docstring_example_runs() -> None:
    [test] = doctest.DocTestFinder().find(Text.format, "Text.format", globs={"Text": Text})
    runner = doctest.DocTestRunner(verbose=False)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and test.examples
