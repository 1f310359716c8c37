"""Device time as a user reads and writes it (``--budget``)."""

import math

import pytest

from search.results.durations import duration_text, parse_duration
from vidseg.errors import InputError


@pytest.mark.parametrize("text, seconds", [("20h", 72000), ("45m", 2700), ("1h30m", 5400), ("90s", 90),
                                           ("1.5d", 129600), (" 2H ", 7200), ("1h 30m", 5400), (".5h", 1800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, says", [("0", "is no time at all"), ("0h", "is no time at all"),
                                        ("-5m", "is negative"), ("3x", "no unit 'x'"), ("90", "has no unit"),
                                        ("2h5", "is not a duration"), ("abc", "is not a duration"),
                                        ("", "is not a duration")])
def test_bad_durations_are_named_in_one_line(text, says):
    with pytest.raises(InputError) as err:
        parse_duration(text)
    assert says in str(err.value) and str(err.value).startswith("--budget") and "\n" not in str(err.value)


def test_durations_read_back():
    assert duration_text(42) == "42.0s" and duration_text(750) == "12m 30s" and duration_text(3900) == "1h 05m"
    assert duration_text(math.nan) == "?"
