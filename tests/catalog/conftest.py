"""Fixtures for catalog tests: a writable copy of the bundled data to break on purpose."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from models_catalog.catalog import DATA_DIR

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

Editor = Callable[[str, Callable[[Any], Any]], Path]


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A copy of models_catalog/data in tmp_path."""
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


@pytest.fixture
def edit(data_copy: Path) -> Editor:
    """edit(file, fn): parse the copied YAML file, let fn mutate it in place, write it back."""

    def _edit(file: str, fn: Callable[[Any], Any]) -> Path:
        path = data_copy / file
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
        fn(doc)
        text = yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return data_copy

    return _edit


def find(items: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    """The entry of a YAML list with this id (or name, for instances)."""
    return next(i for i in items if i.get("id", i.get("name")) == ident)
