"""Shared helpers for the input tests: the catalog's operations and the bundled samples."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from activities.inputs.validate import check_input
from models_catalog.catalog import load_catalog


def op_args(key: str) -> dict[str, Any]:
    """check_input keyword arguments for "service/operation", from the real catalog."""
    service, operation = key.split("/", 1)
    op = load_catalog().operation(service, operation)
    return {"service": service, "operation": op.id, "content_types": list(op.content_types),
            "unit": op.unit}  # fmt: skip


def check(data: bytes, key: str, declared: str | None = None) -> tuple[str, Decimal, dict]:
    return check_input(data, declared=declared, **op_args(key))


@pytest.fixture
def catalog():  # noqa: ANN201 - test fixture
    return load_catalog()
