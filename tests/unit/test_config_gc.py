"""POCHO_GC_THRESHOLD: three integers, a clear error naming the variable otherwise."""

from __future__ import annotations

import pytest

from pocho_rt.config import ConfigError, load_settings


def test_gc_threshold_defaults_and_parses() -> None:
    assert load_settings({}).gc_threshold == (50_000, 20, 100)
    assert load_settings({"POCHO_GC_THRESHOLD": "700, 10, 10"}).gc_threshold == (700, 10, 10)


@pytest.mark.parametrize("raw", ["700,10", "a,b,c", "1,2,3,4", "-1,10,10"])
def test_bad_gc_threshold_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="POCHO_GC_THRESHOLD"):
        load_settings({"POCHO_GC_THRESHOLD": raw})
