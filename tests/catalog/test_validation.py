"""Each validation rule, fed a copy of the bundled catalog broken in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.errors import CatalogError, CatalogValidationError
from tests.catalog.conftest import Editor, find

MODELS, INSTANCES, SERVICES, REGISTRY = (
    "self_hosted.yaml",
    "instances.yaml",
    "services.yaml",
    "registry_entries.yaml",
)


def problems_of(data_dir: Path) -> list[str]:
    with pytest.raises(CatalogValidationError) as info:
        load_catalog(data_dir)
    assert isinstance(info.value, CatalogError)
    assert str(info.value).count("\n  - ") == len(info.value.problems)
    return info.value.problems


def assert_problem(data_dir: Path, *fragments: str) -> list[str]:
    problems = problems_of(data_dir)
    assert any(all(f in p for f in fragments) for p in problems), problems
    return problems


def model(doc: dict[str, Any], model_id: str) -> dict[str, Any]:
    return find(doc["models"], model_id)


def test_copy_of_bundled_data_is_valid(data_copy: Path) -> None:
    assert len(load_catalog(data_copy).models) == 33


# ----------------------------------------------------------------------------- references


def test_unknown_model_in_service(edit: Editor) -> None:
    d = edit(
        SERVICES,
        lambda doc: find(doc["services"], "perception")["optional_models"].append("yolov9"),
    )
    assert_problem(d, "services.yaml", "'perception'", "unknown model 'yolov9'")


def test_unknown_model_in_operation(edit: Editor) -> None:
    def fn(doc: Any) -> None:
        find(find(doc["services"], "medical")["operations"], "segment")["required_models"] = [
            "medsam9"
        ]

    d = edit(SERVICES, fn)
    problems = assert_problem(d, "operation 'segment'", "unknown model 'medsam9'")
    assert any("did you mean 'medsam'" in p for p in problems)


def test_operation_model_not_listed_by_service(edit: Editor) -> None:
    def fn(doc: Any) -> None:
        find(find(doc["services"], "geospatial")["operations"], "change")["optional_models"] = [
            "sam2"
        ]

    assert_problem(edit(SERVICES, fn), "operation 'change'", "'sam2' is not listed by the service")


def test_alias_or_registry_entry_in_service(edit: Editor) -> None:
    def fn(doc: Any) -> None:
        svc = find(doc["services"], "perception")
        svc["optional_models"] += ["sam-2", "yolo11m"]

    d = edit(SERVICES, fn)
    assert_problem(d, "'sam-2' is an alias", "'sam2'")
    assert_problem(d, "'yolo11m' is a registry entry")


def test_service_model_used_by_no_operation(edit: Editor) -> None:
    d = edit(
        SERVICES,
        lambda doc: find(doc["services"], "reconstruction")["optional_models"].append("sam2"),
    )
    assert_problem(d, "'reconstruction'", "'sam2' is used by none of its operations")


def test_operation_path_must_match(edit: Editor) -> None:
    def fn(doc: Any) -> None:
        find(find(doc["services"], "perception")["operations"], "detect")["path"] = "/vision/detect"

    assert_problem(edit(SERVICES, fn), "path '/vision/detect' should be '/perception/detect'")


# ----------------------------------------------------------------------------- instances


def test_instance_type_missing_from_price_table(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(instance_type="ml.g6.xlarge"))
    assert_problem(d, "model 'yolov8m'", "'ml.g6.xlarge' is not in the price table")


def test_instance_row_removed(edit: Editor) -> None:
    d = edit(
        INSTANCES, lambda doc: doc["instances"].remove(find(doc["instances"], "ml.g5.12xlarge"))
    )
    problems = problems_of(d)
    assert (
        sum("'ml.g5.12xlarge' is not in the price table" in p for p in problems) == 2
    )  # af2, protenix


def test_billed_rate_must_be_base_times_markup(edit: Editor) -> None:
    d = edit(
        INSTANCES, lambda doc: find(doc["instances"], "ml.g5.xlarge").update(billed_hourly="2.50")
    )
    problems = assert_problem(d, "instance 'ml.g5.xlarge'", "billed_hourly 2.50", "2.47")
    # every model on it now disagrees with the table too
    assert any("model 'yolov8m'" in p and "hourly_rate 2.47" in p for p in problems)


def test_gpu_memory_above_vram(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(gpu_memory_gb=25))
    assert_problem(d, "model 'yolov8m'", "gpu_memory_gb 25 exceeds the 24 GB VRAM of ml.g5.xlarge")


def test_hourly_rate_must_equal_instance_billed_rate(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "sam2")["pricing"].update(hourly_rate="3.50"))
    assert_problem(d, "model 'sam2'", "hourly_rate 3.50", "billed rate 3.55")


# ----------------------------------------------------------------------------- names


def test_duplicate_model_id(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: doc["models"].append(dict(model(doc, "mobilesam"))))
    assert_problem(d, "model 'mobilesam'", "duplicate model id")


def test_duplicate_alias(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "sam-vit-h").update(aliases=["sam-2"]))
    assert_problem(d, "alias 'sam-2' collides with alias of")


def test_alias_colliding_with_an_id(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8x").update(aliases=["yolov8m", "yolo11m"]))
    assert_problem(d, "alias 'yolov8m' collides with self-hosted model 'yolov8m'")
    assert_problem(d, "alias 'yolo11m' collides with registry entry 'yolo11m'")


def test_registry_entry_with_a_deployable_id(edit: Editor) -> None:
    d = edit(REGISTRY, lambda doc: find(doc["entries"], "geosam").update(id="medsam"))
    assert_problem(d, "registry_entries.yaml", "'medsam'", "also a deployable model")


def test_alias_colliding_with_external_model(edit: Editor, data_copy: Path) -> None:
    ext_id = next(iter(load_catalog(data_copy).external_models))
    d = edit(MODELS, lambda doc: model(doc, "mobilesam").update(aliases=[ext_id]))
    assert_problem(d, "external.yaml", f"'{ext_id}'", "collides with alias of 'mobilesam'")


def test_ids_must_be_endpoint_safe(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(id="YOLO_v8m"))
    assert_problem(d, "model 'YOLO_v8m'", "id:")


# ----------------------------------------------------------------------------- values


def test_min_instances_above_max(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "nerfstudio")["thermal"].update(min_instances=3))
    assert_problem(d, "model 'nerfstudio'", "thermal", "min_instances (3) > max_instances (2)")


@pytest.mark.parametrize("tier", [0, 6])
def test_min_tier_out_of_range(edit: Editor, tier: int) -> None:
    d = edit(MODELS, lambda doc: model(doc, "medsam").update(min_tier=tier))
    assert_problem(d, "model 'medsam'", "min_tier")


def test_service_min_tier_out_of_range(edit: Editor) -> None:
    d = edit(SERVICES, lambda doc: find(doc["services"], "medical").update(min_tier=9))
    assert_problem(d, "service 'medical'", "min_tier")


def test_negative_money(edit: Editor) -> None:
    edit(MODELS, lambda doc: model(doc, "yolov8n")["pricing"].update(per_image="-0.002"))
    d = edit(
        SERVICES,
        lambda doc: find(doc["services"], "scientific")["pricing"].update(per_request="-1"),
    )
    assert_problem(d, "model 'yolov8n'", "pricing.per_image", "greater than 0")
    assert_problem(d, "service 'scientific'", "pricing.per_request")


def test_float_money_is_rejected(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8n")["pricing"].update(per_image=0.002))
    assert_problem(d, "model 'yolov8n'", "pricing.per_image", "not a float")


def test_model_needs_the_unit_price_its_operations_bill(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "mobilesam")["pricing"].pop("per_image"))
    problems = problems_of(d)
    # mobilesam serves perception segment/analyze and geospatial detect/floods
    assert sum("model 'mobilesam' has no per_image price" in p for p in problems) == 3


def test_service_needs_the_unit_price_its_operations_bill(edit: Editor) -> None:
    d = edit(
        SERVICES, lambda doc: find(doc["services"], "medical")["pricing"].pop("per_minute_audio")
    )
    assert_problem(d, "operation 'transcribe'", "bills per audio_minute", "no per_minute_audio")


def test_typo_in_a_key_fails_loudly(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(instance_typ="ml.g5.xlarge"))
    assert_problem(d, "model 'yolov8m'", "instance_typ", "Extra inputs are not permitted")


def test_wrong_type(edit: Editor) -> None:
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(parameters="many"))
    assert_problem(d, "model 'yolov8m'", "parameters")


def test_every_problem_is_listed_at_once(edit: Editor) -> None:
    edit(MODELS, lambda doc: model(doc, "yolov8m").update(gpu_memory_gb=99))
    edit(INSTANCES, lambda doc: find(doc["instances"], "ml.g4dn.xlarge").update(base_hourly="-1"))
    d = edit(
        SERVICES, lambda doc: find(doc["services"], "perception")["required_models"].append("nope")
    )
    problems = problems_of(d)
    assert any("gpu_memory_gb 99" in p for p in problems)
    assert any("instance 'ml.g4dn.xlarge'" in p and "base_hourly" in p for p in problems)
    assert any("unknown model 'nope'" in p for p in problems)


# ----------------------------------------------------------------------------- malformed files


def test_bad_yaml_syntax(data_copy: Path) -> None:
    (data_copy / SERVICES).write_text("services:\n  - id: [perception\n", encoding="utf-8")
    assert_problem(data_copy, "services.yaml: invalid YAML at line")


def test_missing_file(data_copy: Path) -> None:
    (data_copy / INSTANCES).unlink()
    problems = assert_problem(data_copy, "instances.yaml: missing file")
    assert not any("Traceback" in p for p in problems)


def test_top_level_not_a_mapping(data_copy: Path) -> None:
    (data_copy / REGISTRY).write_text("- just\n- a list\n", encoding="utf-8")
    assert_problem(
        data_copy, "registry_entries.yaml: top level must be a mapping with a `entries:`"
    )


def test_entries_not_a_list_and_unknown_top_level_key(data_copy: Path) -> None:
    (data_copy / REGISTRY).write_text("entries: {a: 1}\nextra: true\n", encoding="utf-8")
    assert_problem(data_copy, "registry_entries.yaml: `entries:` must be a list")
    assert_problem(data_copy, "registry_entries.yaml: unknown top-level key 'extra'")


def test_entry_not_a_mapping(edit: Editor) -> None:
    d = edit(SERVICES, lambda doc: doc["services"].append("oops"))
    assert_problem(d, "services.yaml: service #6: must be a mapping")


def test_instances_markup_must_be_a_quoted_decimal(edit: Editor) -> None:
    d = edit(INSTANCES, lambda doc: doc.update(markup=0.75))
    assert_problem(d, "instances.yaml", "markup")


def test_broken_external_file_is_reported_with_the_rest(data_copy: Path, edit: Editor) -> None:
    (data_copy / "external.yaml").write_text("providers: [\n", encoding="utf-8")
    d = edit(MODELS, lambda doc: model(doc, "yolov8m").update(min_tier=7))
    problems = problems_of(d)
    assert any("external.yaml" in p for p in problems)
    assert any("model 'yolov8m'" in p for p in problems)


def test_not_a_directory(tmp_path: Path) -> None:
    assert_problem(tmp_path / "nowhere", "not a directory")
