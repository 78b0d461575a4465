"""How a drill judges a diagnosis (no lab): several roots, a standing fault, the score table."""

from studiodoctor.lab.drill import DrillResult, score_table
from studiodoctor.lab.faults import FAULTS


def result(**kw):
    base = dict(fault="f", symptom="502", expected="nginx", named="nginx", check="nginx.reachable", seconds=1.0)
    return DrillResult(**{**base, **kw})


def test_two_roots_must_both_be_named_in_walk_order():
    both = dict(expected="nginx+redis", expected_layers=("nginx", "redis"))
    assert result(**both, named_layers=["nginx", "redis"]).localized
    assert not result(**both, named_layers=["nginx"]).localized
    assert not result(**both, named_layers=["redis", "nginx"], named="redis").localized
    assert FAULTS["nginx-and-redis-down"].layers == ("nginx", "redis")


def test_a_standing_failure_named_or_not_listed_unrelated_fails_the_drill():
    ok = result(standing="public-listing", expected_layers=("nginx",), named_layers=["nginx"])
    assert ok.localized
    bad = result(standing="public-listing", standing_missed=["nginx.content_listing"], expected_layers=("nginx",),
                 named_layers=["nginx"])
    assert not bad.localized
    table = score_table([ok, bad], [])
    assert "STANDING NAMED  (under standing public-listing)" in table
    assert "localized 1/2 diagnoses" in table
