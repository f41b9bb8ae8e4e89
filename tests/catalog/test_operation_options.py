"""Job options against the catalog's documented options of each operation (pure)."""

from __future__ import annotations

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.operation_options import option_problem

CATALOG = load_catalog()


def problem(key: str, options: dict) -> str | None:
    service, operation = key.split("/", 1)
    return option_problem(service, CATALOG.operation(service, operation), options)


GOOD = [
    ("perception/detect", {}),
    ("perception/detect", {"min_score": 0.5, "max_detections": 5}),
    ("perception/detect", {"min_score": 1}),  # an integer is a number
    ("perception/segment", {"box": [1, 2, 30, 40], "max_masks": 3}),
    ("medical/segment", {"threshold": -200.5, "box": [0, 0, 10.5, 10]}),
    ("geospatial/change", {"band_order": ["green", "red", "nir"], "before_location": "/a.tif"}),
]
BAD = [
    ("perception/classify", {"top_k": 3}, "has no option 'top_k' (its options: none)"),
    ("perception/detect", {"minscore": 0.5}, "its options: max_detections, min_score"),
    ("perception/detect", {"min_score": 1.5}, "must be a number >= 0 and <= 1, got 1.5"),
    ("perception/detect", {"min_score": True}, "must be a number"),
    ("perception/detect", {"min_score": float("nan")}, "must be a number"),
    ("perception/detect", {"max_detections": 2.5}, "must be an integer >= 1 and <= 100"),
    ("perception/detect", {"max_detections": 0}, "must be an integer >= 1"),
    ("perception/segment", {"box": [1, 2, 3]}, "must be [x1, y1, x2, y2]"),
    ("perception/segment", {"box": [5, 5, 5, 9]}, "0 <= x1 < x2"),
    ("medical/segment", {"threshold": "high"}, "must be a number, got 'high'"),
    ("geospatial/classify", {"band_order": "rgb"}, "must be a list of band names"),
    ("geospatial/classify", {"band_order": ["green", "red", "nir", "pan"]}, "unknown band(s) pan"),
    ("geospatial/classify", {"band_order": ["green", "red", "red", "nir"]}, "names a band twice"),
    ("geospatial/change", {"before_location": ""}, "must be a path or URI"),
]


@pytest.mark.parametrize(("key", "options"), GOOD)
def test_documented_options_pass(key: str, options: dict) -> None:
    assert problem(key, options) is None


@pytest.mark.parametrize(("key", "options", "words"), BAD)
def test_anything_else_is_named(key: str, options: dict, words: str) -> None:
    message = problem(key, options)
    assert message is not None and words in message, message
