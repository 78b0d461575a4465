"""Fixtures of the safety tests (the shapes are in tests/safety/stack.py)."""

from __future__ import annotations

import pytest

from tests.safety.stack import stack_sections


@pytest.fixture
def stack_at(make_profile):
    """stack_at(url, without=(), **top) -> a Profile with every HTTP layer of the stack at ``url`` (but the
    layers in ``without``); ``top`` keys as make_profile's (``timeout=3``, ``public_urls=[]``)."""

    def make(url: str, *, without=(), **top):
        sections = {k: v for k, v in stack_sections(url).items() if k not in without}
        return make_profile(sections, **top)

    return make
