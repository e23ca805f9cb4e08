"""Untrusted values made fit for one log line."""

from __future__ import annotations

from common.logsafe import LOG_VALUE_LIMIT, loggable


def test_control_characters_are_escaped_so_a_value_stays_on_one_line():
    assert loggable("rack1\nregion: enrolled rack forged") == "rack1\\nregion: enrolled rack forged"
    assert loggable("a\r\x1b[31mred\x00") == "a\\r\\x1b[31mred\\x00"
    assert loggable(b"bytes\n\xff") == "bytes\\n\ufffd"
    assert loggable("plain name-1.example") == "plain name-1.example"
    assert loggable(None) == "-"


def test_long_values_are_capped_and_say_how_long_they_were():
    logged = loggable("x" * 1_000_000)
    assert logged == "x" * LOG_VALUE_LIMIT + "...(1000000 characters)"
    assert loggable("\n" * 1000, limit=5) == "\\n" * 5 + "...(1000 characters)"
