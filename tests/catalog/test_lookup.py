"""Catalog lookups: aliases, case, suggestions, errors, caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.errors import (
    CatalogError,
    NotDeployableError,
    UnknownModelError,
    UnknownOperationError,
    UnknownServiceError,
)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("sam2", "sam2"),
        ("SAM-2", "sam2"),
        ("  Whisper-Large-V3-Turbo ", "whisper-turbo"),
        ("3dgs", "3d-gaussian-splatting"),
        ("nerfstudio-nerfacto", "nerfstudio"),
        ("qwen2.5-72b", "qwen-72b-instruct"),
        ("yolo11m", "yolo11m"),  # a registry entry resolves to itself
    ],
)
def test_resolve_model_id(cat, name: str, canonical: str) -> None:
    assert cat.resolve_model_id(name) == canonical


def test_model_by_alias(cat) -> None:
    assert cat.model("TitaNet-L").id == "titanet-large"


def test_unknown_model_suggests_close_names(cat) -> None:
    with pytest.raises(UnknownModelError) as info:
        cat.model("yolov8z")
    assert {"yolov8n", "yolov8m", "yolov8x"} <= set(info.value.suggestions)
    assert str(info.value).startswith("unknown model 'yolov8z'; did you mean ")
    # aliases are suggested as their canonical ids
    with pytest.raises(UnknownModelError) as info:
        cat.model("mistral-7b")
    assert info.value.suggestions[0] == "mistral-7b-instruct"


def test_unknown_model_without_suggestions(cat) -> None:
    with pytest.raises(UnknownModelError) as info:
        cat.model("zzzzzzzz")
    assert str(info.value) == "unknown model 'zzzzzzzz'"


def test_registry_entry_is_not_deployable(cat) -> None:
    with pytest.raises(NotDeployableError, match="registry entry"):
        cat.model("llama-3.3-70b")


def test_service_and_operation_lookups(cat) -> None:
    assert cat.service("Perception").id == "perception"
    assert cat.operation("scientific", "protein/fold").path == "/scientific/protein/fold"
    assert cat.operation("scientific", "/scientific/protein/fold").id == "protein/fold"
    assert cat.operation("medical", "segment/3d").required_models == ["nnunet"]
    with pytest.raises(UnknownServiceError, match="did you mean 'perception'"):
        cat.service("perceptoin")
    with pytest.raises(UnknownOperationError, match="operations: detect, segment"):
        cat.operation("perception", "fold")


def test_all_errors_are_catalog_errors() -> None:
    for cls in (UnknownModelError, NotDeployableError, UnknownServiceError, UnknownOperationError):
        assert issubclass(cls, CatalogError)


def test_instance_for(cat) -> None:
    inst = cat.instance_for("alphafold2")
    assert (inst.name, inst.gpu_count, inst.vram_gb) == ("ml.g5.12xlarge", 4, 96)
    assert cat.instance_for(cat.model("yolov8n")).name == "ml.g4dn.xlarge"


def test_search_covers_registry_entries(cat) -> None:
    ids = [m.id for m in cat.search("ocr")]
    assert ids == ["paddleocr-v4", "trocr-large"]
    assert "sam2" in [m.id for m in cat.search("SAM-2")]


def test_default_load_is_cached_override_is_not(data_copy: Path) -> None:
    assert load_catalog() is load_catalog()
    fresh = load_catalog(data_copy)
    assert fresh is not load_catalog(data_copy)
    assert fresh.data_dir == data_copy
