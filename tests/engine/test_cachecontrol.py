"""One Cache-Control reading (RFC 9111) for nginx, gcs and edge: the inputs on which the two old parsers
(nginx's and gcs's) disagreed, and the ones both got wrong."""

import pytest

from studiodoctor.parsers.cachecontrol import max_age, parse_cache_control


def test_plain_directives():
    assert parse_cache_control("Private, MAX-AGE=5, no-transform") == {"private": True, "max-age": "5",
                                                                     "no-transform": True}
    assert parse_cache_control(None) == {} and parse_cache_control("") == {} and parse_cache_control(" , ,") == {}


def test_empty_argument_is_an_argument_not_a_flag():
    # old nginx: {"max-age": True}; old gcs: {"max-age": ""}. The directive has an (invalid) argument.
    assert parse_cache_control("max-age=") == {"max-age": ""}
    assert max_age(parse_cache_control("max-age=")) == 0          # invalid freshness: stale


def test_invalid_s_maxage_does_not_fall_back_to_max_age():
    # old nginx fell back to max-age (31536000); old gcs said "no max-age" (None). RFC 9111: s-maxage
    # applies to a shared cache and invalid freshness information means stale.
    cc = parse_cache_control("public, s-maxage=soon, max-age=31536000")
    assert max_age(cc) == 0
    assert max_age(cc, shared=False) == 31536000


def test_first_occurrence_wins():
    # both old parsers kept the last one
    assert max_age(parse_cache_control("max-age=5, max-age=31536000")) == 5


def test_quoted_string_may_hold_commas():
    # both old parsers split inside the quotes and invented a directive `x-id"`
    cc = parse_cache_control('private="set-cookie, x-id", max-age=60')
    assert cc == {"private": "set-cookie, x-id", "max-age": "60"}
    assert parse_cache_control('no-cache="a\\"b"') == {"no-cache": 'a"b'}
    assert parse_cache_control('max-age="60"')["max-age"] == "60"


@pytest.mark.parametrize("value,seconds", [
    ("public, max-age=31536000, immutable", 31536000),
    ("s-maxage=10, max-age=60", 10),
    ("max-age=-1", 0),
    ("max-age=99999999999", 2 ** 31),
    ("no-store", None),
])
def test_max_age(value, seconds):
    assert max_age(parse_cache_control(value)) == seconds
