"""The PIN: entropy, alphabet, grouping and what a person may type."""

from __future__ import annotations

import collections

from siegel.plugins.pin_letters import pins


def test_a_pin_has_over_40_bits_from_an_alphabet_without_look_alikes():
    assert pins.BITS > 50
    assert not set("0O1I2Z5S6G8BQ") & set(pins.ALPHABET)
    drawn = [pins.new_pin() for _ in range(2000)]
    assert len(set(drawn)) == len(drawn)
    assert all(len(p) == pins.LENGTH and set(p) <= set(pins.ALPHABET) for p in drawn)
    # every symbol is used, none is favoured grossly (24 000 draws, about 1043 each)
    counts = collections.Counter("".join(drawn))
    assert set(counts) == set(pins.ALPHABET)
    assert max(counts.values()) < 1.25 * min(counts.values())


def test_grouped_for_reading_and_typed_back_in_any_case():
    pin = "ACDEFHJKLMNP"
    assert pins.grouped(pin) == "ACDE-FHJK-LMNP"
    for typed in ("ACDE-FHJK-LMNP", "acde fhjk lmnp", " acdefhjklmnp ", "ACDE‐FHJK‐LMNP"):
        assert pins.normalised(typed) == pin


def test_what_cannot_be_a_pin_is_told_apart_without_an_attempt():
    for typed in ("", "ACDE-FHJK-LMN", "ACDE-FHJK-LMNPA", "ACDE-FHJK-LMN0", "ACDE-FHJK-LMNO"):
        assert pins.normalised(typed) is None
