"""The bundled catalog data: counts, seed fidelity, aliases, registry entries, services."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from models_catalog.catalog import load_catalog
from models_catalog.types import (
    UNIT_PRICE_FIELD,
    ModelStatus,
    RegistryEntry,
    SelfHostedModel,
    ThermalState,
)

SEEDS = Path(__file__).resolve().parents[3] / "shared" / "seeds"  # beside the checkout
# A copy of seed 000 travels with the tests, so a fresh clone (CI) checks every model too.
BUNDLED_SEED_000 = (
    Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "000_05d174019c12d1dc.txt"
)


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_counts(cat) -> None:
    assert len(cat.models) == 33
    assert len(cat.instances) == 7
    assert len(cat.services) == 5
    assert len(cat.operations()) == 16
    # 56 seed-001 rows - 13 ids shared with seed 000 - 9 renamed (aliases) = 34
    assert len(cat.registry_entries) == 34
    assert all(m.deployable for m in cat.deployable_models())
    assert not any(r.deployable for r in cat.registry_entries.values())


def test_money_is_decimal_and_hourly_matches_instance(cat) -> None:
    for m in cat.models.values():
        inst = cat.instance_for(m)
        assert m.pricing.hourly_rate == inst.billed_hourly, m.id
        assert m.pricing.markup == Decimal("0.75")
        for field in ["hourly_rate", *UNIT_PRICE_FIELD.values()]:
            value = getattr(m.pricing, field)
            assert value is None or type(value) is Decimal
        assert m.gpu_memory_gb <= inst.vram_gb
    billed = {i.name: i.billed_hourly for i in cat.instances.values()}
    assert billed["ml.g4dn.xlarge"] == Decimal("1.30")
    assert billed["ml.p4d.24xlarge"] == Decimal("57.35")


def test_spot_values_from_seed_000(cat) -> None:
    yolo = cat.model("yolov8m")
    assert yolo.pricing.per_image == Decimal("0.004")
    assert yolo.thermal.max_instances == 5
    assert yolo.commercial_use_notes == "Requires Ultralytics Enterprise License for commercial use"
    af = cat.model("alphafold2")
    assert af.thermal.default_state is ThermalState.OFF
    assert (af.thermal.warmup_time_seconds, af.gpu_memory_gb, af.instance_type) == (
        180,
        96,
        "ml.g5.12xlarge",
    )
    assert af.output_formats == ["application/pdb", "application/mmcif", "application/json"]
    assert cat.model("protenix").status is ModelStatus.BETA
    assert cat.model("llama-3-70b-instruct").environment["QUANTIZE"] == "bitsandbytes"
    assert cat.model("llama-3-70b-instruct").min_tier == 5
    assert cat.model("whisper-turbo").environment["HF_MODEL_ID"] == "openai/whisper-large-v3-turbo"
    assert cat.model("sam2").pricing.per_minute_video == Decimal("0.50")
    assert cat.model("efficientnet-b0").parameters == 5_300_000


@pytest.mark.skipif(not SEEDS.is_dir(), reason="no seed files beside the checkout")
def test_bundled_seed_is_the_shared_one() -> None:
    assert (SEEDS / BUNDLED_SEED_000.name).read_bytes() == BUNDLED_SEED_000.read_bytes()


def test_every_model_matches_its_seed_block(cat) -> None:
    """Re-read seed 000 and compare the key facts of each of the 33 blocks."""
    text = BUNDLED_SEED_000.read_text(encoding="utf-8")
    blocks = re.findall(r"\n  \{\n    id: '([^']+)',(.*?)\n  \},", text, flags=re.S)
    assert len(blocks) == 33
    for model_id, body in blocks:
        m = cat.models[model_id]

        def get(key: str, body: str = body, model_id: str = model_id) -> str:
            found = re.search(rf"\b{key}: '?([^',}}]+)'?", body)
            assert found, (model_id, key)
            return found.group(1).strip()

        assert m.instance_type == get("instanceType"), model_id
        assert m.pricing.hourly_rate == Decimal(get("hourlyRate")), model_id
        assert m.gpu_memory_gb == int(get("gpuMemoryGB")), model_id
        assert m.min_tier == int(get("minTier")), model_id
        assert m.status == get("status"), model_id
        assert m.thermal.default_state == get("defaultState"), model_id
        assert m.thermal.max_instances == int(get("maxInstances")), model_id
        assert m.description == get("description"), model_id
        assert m.seed_ref is not None
        line = int(m.seed_ref.split("L")[1])
        assert f"id: '{model_id}'" in text.splitlines()[line - 1]


def test_aliases(cat) -> None:
    assert cat.aliases == {
        "sam-2": "sam2",
        "clip-vit-l": "clip-vit-l14",
        "whisper-large-v3-turbo": "whisper-turbo",
        "titanet-l": "titanet-large",
        "pyannote-diarization-3.1": "pyannote-speaker-diarization",
        "nerfstudio-nerfacto": "nerfstudio",
        "3dgs": "3d-gaussian-splatting",
        "mistral-7b-v0.3": "mistral-7b-instruct",
        "qwen2.5-72b": "qwen-72b-instruct",
        "whisper-large": "whisper-large-v3",
        "yolov8": "yolov8x",
        "esm2": "esm2-3b",
        "yolo11x": "yolov11x",
    }


def test_different_models_are_registry_entries_not_aliases(cat) -> None:
    for rid in ("llama-3.3-70b", "yolo11m"):
        assert rid in cat.registry_entries
        assert rid not in cat.aliases
        assert cat.resolve_model_id(rid) == rid


def test_registry_entries_keep_seed_values_and_never_invent(cat) -> None:
    entries: dict[str, RegistryEntry] = cat.registry_entries
    assert set(entries).isdisjoint(cat.models)
    assert entries["paddleocr-v4"].specialty == "ocr"
    assert entries["paddleocr-v4"].seed_ref == "S1 L537"
    # Cut-off rows: the lost values stay empty.
    assert entries["convnext-xl"].truncated and entries["convnext-xl"].category is None
    assert entries["starcoder2-15b"].category is None
    assert entries["bge-large-en"].specialty is None
    assert entries["shap-e"].tags == ["text-to-3d", "image-to-3d"]
    # No price/instance fields exist on a registry entry at all.
    assert "pricing" not in RegistryEntry.model_fields
    assert "instance_type" not in RegistryEntry.model_fields


def test_hipaa_only_where_the_seed_says_so(cat) -> None:
    assert {m.id for m in cat.models.values() if m.hipaa_eligible} == {"nnunet", "medsam"}


def test_modalities_are_derived(cat) -> None:
    assert cat.model("nnunet").input_modalities == ["volume", "image"]
    assert cat.model("esm2-3b").input_modalities == ["protein", "text"]
    assert cat.model("nerfstudio").output_modalities == ["3d", "video"]
    assert cat.model("whisper-large-v3").input_modalities == ["audio"]


def test_services_and_operations(cat) -> None:
    paths = {op.path for _, op in cat.operations()}
    assert paths == {
        "/perception/detect",
        "/perception/segment",
        "/perception/classify",
        "/perception/analyze",
        "/scientific/protein/embed",
        "/scientific/protein/fold",
        "/scientific/geometry/solve",
        "/medical/segment",
        "/medical/segment/3d",
        "/medical/transcribe",
        "/geospatial/classify",
        "/geospatial/detect/floods",
        "/geospatial/change",
        "/reconstruction/nerf",
        "/reconstruction/gaussian",
        "/reconstruction/render",
    }
    perception = cat.service("perception")
    assert perception.required_models == ["yolov8m", "mobilesam"]
    assert perception.pricing.per_image == Decimal("0.02")
    assert perception.pricing.markup == Decimal("0.40")
    # An operation's required models are authoritative even where the service says optional.
    classify = cat.operation("perception", "classify")
    assert classify.required_models == ["efficientnetv2-l"]
    assert "efficientnetv2-l" in perception.optional_models
    fold = cat.operation("scientific", "protein/fold")
    assert fold.required_models == ["alphafold2"] and fold.long_running and fold.unit == "request"
    assert cat.operation("medical", "transcribe").unit == "audio_minute"
    assert cat.operation("reconstruction", "gaussian").unit == "3d_model"
    assert not cat.operation("perception", "detect").long_running
    for svc, op in cat.operations():
        assert svc.pricing.price_for(op.unit) is not None
        for model_id in op.models:
            assert cat.model(model_id).pricing.price_for(op.unit) is not None


def test_models_round_trip_through_json(cat) -> None:
    """Temporal payloads carry these as JSON; extra='forbid' must not reject our own dumps."""
    for m in cat.models.values():
        assert SelfHostedModel.model_validate(m.model_dump(mode="json")) == m
    for svc in cat.services.values():
        assert type(svc).model_validate(svc.model_dump(mode="json")) == svc


def test_models_are_frozen(cat) -> None:
    with pytest.raises(ValueError):
        cat.model("yolov8m").min_tier = 1  # type: ignore[misc]


def test_external_catalog_is_integrated(cat) -> None:
    assert cat.providers and cat.external_models
    for ext in cat.external_models.values():
        assert ext.provider_id in cat.providers
