"""The one bounded number reader (region/number_input.py) and its Form face: any text is a number
within bounds or a field error, never inf, nan, an exception or a 4,000-digit int."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from region.api.params import Form, Params
from region.number_input import MAX_CHARS, NumberError, read_integer, read_number


@pytest.mark.parametrize("raw,message", [
    ("x", "Enter a whole number."), ("1.5", "Enter a whole number."), ("1e3", "Enter a whole number."),
    ("1_000", "Enter a whole number."), ("\u0661", "Enter a whole number."), ("inf", "Enter a whole number."),
    ("-1", "greater than or equal to 0."), ("101", "less than or equal to 100."),
    ("1" + "0" * 4000, f"at most {MAX_CHARS} characters (it has 4001)"),
])
def test_integers_are_ascii_short_and_in_range(raw, message):
    with pytest.raises(NumberError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        read_integer(raw, minimum=0, maximum=100)


def test_integers_read():
    assert [read_integer(v, minimum=-5, maximum=100) for v in (" 7 ", "+7", "-5", "0100")] == [7, 7, -5, 100]


@pytest.mark.parametrize("raw,message", [
    ("inf", "Enter a number."), ("nan", "Enter a number."), ("-Infinity", "Enter a number."),
    ("0x10", "Enter a number."), ("\u0661", "Enter a number."), ("1e400", "less than or equal to 10."),
    ("-1e400", "greater than or equal to 0."), ("1e308", "less than or equal to 10."), ("1e99999", "less than or equal to 10."),
    ("9" * 400, f"at most {MAX_CHARS} characters"),
])
def test_numbers_are_finite_and_in_range(raw, message):
    with pytest.raises(NumberError, match=message.replace(".", r"\.")):
        read_number(raw, minimum=0, maximum=10)


def test_numbers_read():
    assert [read_number(v, minimum=0, maximum=10) for v in ("1.5", ".5", "5.", "1e1", "0", "2E-3")] == \
        [1.5, 0.5, 5.0, 10.0, 0.0, 0.002]


@given(st.text(max_size=2 * MAX_CHARS))
def test_any_text_is_a_number_in_range_or_a_number_error(raw):
    for read, minimum, maximum in ((read_integer, -3, 1000), (read_number, -3.0, 1e6)):
        try:
            value = read(raw, minimum=minimum, maximum=maximum)
        except NumberError as e:
            assert str(e)
        else:
            assert math.isfinite(value) and minimum <= value <= maximum


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_every_integer_in_range_round_trips(n):
    bound = 10**12
    assert read_integer(str(n), minimum=-bound, maximum=bound) == n
    assert read_number(str(n), minimum=-bound, maximum=bound) == n


def test_form_collects_every_field_error_and_reads_repeated_numbers():
    form = Form(Params({"a": ["inf"], "b": [" "], "c": ["3", "1e400", "", "2"], "d": ["12"], "e": ["x"]}))
    assert form.number("a", minimum=0, maximum=9) is None
    assert form.number("b", minimum=0, maximum=9, required=True) is None
    assert form.numbers("c", minimum=0, maximum=9) == [3.0, 2.0]
    assert form.integer("d", minimum=0, maximum=99) == 12
    assert form.integer("e", minimum=0, maximum=99) is None
    assert form.integer("absent", minimum=0, maximum=9) is None
    assert form.errors == {"a": ["Enter a number."], "b": ["This field is required."],
                           "c": ["Ensure this value is less than or equal to 9."], "e": ["Enter a whole number."]}
