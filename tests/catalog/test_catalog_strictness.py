"""The catalog refuses what would load wrong silently: duplicate YAML keys, zero prices; YAML
errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.errors import CatalogValidationError
from tests.catalog.conftest import Editor, find


def _problems(data_dir: Path) -> list[str]:
    with pytest.raises(CatalogValidationError) as info:
        load_catalog(data_dir)
    return info.value.problems


def test_duplicate_key_inside_an_entry_is_an_error(data_copy: Path) -> None:
    # YAML's default is "last one wins": a pasted second `max_instances:` silently overrides.
    path = data_copy / "self_hosted.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("      max_instances: ") > 1
    path.write_text(
        text.replace("      max_instances: ", "      max_instances: 9\n      max_instances: ", 1),
        encoding="utf-8",
    )
    problems = _problems(data_copy)
    hits = [p for p in problems if "duplicate key 'max_instances'" in p]
    assert hits and hits[0].startswith("self_hosted.yaml:"), problems
    assert "line" in hits[0] and "\n" not in hits[0]


def test_duplicate_top_level_key_is_an_error(data_copy: Path) -> None:
    # A second `instances:` list would silently drop the first one.
    path = data_copy / "instances.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\ninstances: []\n", encoding="utf-8")
    problems = _problems(data_copy)
    assert any(
        p.startswith("instances.yaml:") and "duplicate key 'instances'" in p for p in problems
    ), problems


def test_duplicate_key_in_external_yaml_is_an_error(data_copy: Path) -> None:
    path = data_copy / "external.yaml"
    path.write_text(path.read_text(encoding="utf-8") + '\nmarkup: "0.10"\n', encoding="utf-8")
    problems = _problems(data_copy)
    assert any("external.yaml" in p and "duplicate key 'markup'" in p for p in problems), problems


def test_malformed_external_yaml_is_one_line(data_copy: Path) -> None:
    (data_copy / "external.yaml").write_text("providers: [\n", encoding="utf-8")
    problems = _problems(data_copy)
    ext = [p for p in problems if "external.yaml" in p]
    assert ext and all("\n" not in p for p in ext), ext
    assert "line" in ext[0]


@pytest.mark.parametrize("field", ["base_hourly", "billed_hourly"])
def test_zero_instance_price_is_rejected(edit: Editor, field: str) -> None:
    def fn(doc: dict) -> None:  # type: ignore[type-arg]
        find(doc["instances"], "ml.g4dn.xlarge").update(base_hourly="0", billed_hourly="0")

    problems = _problems(edit("instances.yaml", fn))
    assert any("ml.g4dn.xlarge" in p and field in p for p in problems), problems


def test_zero_unit_price_of_a_service_is_rejected(edit: Editor) -> None:
    def fn(doc: dict) -> None:  # type: ignore[type-arg]
        svc = find(doc["services"], "perception")
        field = next(k for k, v in svc["pricing"].items() if k != "markup" and v is not None)
        svc["pricing"][field] = "0"

    problems = _problems(edit("services.yaml", fn))
    assert any("'perception'" in p and "pricing" in p for p in problems), problems


def test_external_litellm_id_shadowing_a_self_hosted_name(edit: Editor) -> None:
    # Lookups (`radiant select --model`, pinned LLM calls) accept an external model's LiteLLM
    # id and try external names first: one equal to a self-hosted id or alias would hijack it.
    def fn(doc: dict) -> None:  # type: ignore[type-arg]
        doc["models"][0]["litellm_id"] = "sam-2"  # an alias of sam2

    problems = _problems(edit("external.yaml", fn))
    assert any(
        "external.yaml" in p and "'sam-2'" in p and "alias of 'sam2'" in p for p in problems
    ), problems
