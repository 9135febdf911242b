"""Kink and tie conventions are first-class: declared by the adapter, allowed by the spec,
and what the backend does; a non-preferred one is reported, never silently passed."""
import pytest

from ffnspec.conformance import conventions


# Every row of the [hid.conventions] table is declared with an allowed value and matches the
# backend's behaviour at its point (001 §6.3: units with left and right derivatives; 004).
@pytest.mark.ffnspec(kind="convention")
def test_conventions(case):
    with case.supervised():
        conventions.check(case.clause, case.target, case.record)
