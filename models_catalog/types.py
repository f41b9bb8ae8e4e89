"""Catalog types: the shape every catalog YAML file must have (pydantic v2).

Money is `Decimal` everywhere (DESIGN 2); a float in a price field is rejected, so a YAML price
written as `2.47` instead of `"2.47"` fails loudly instead of loading a binary approximation.
Every model is frozen and forbids unknown keys, so a typo in the data is an error, not a default.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# ----------------------------------------------------------------------------- enums


class ThermalState(StrEnum):
    OFF = "OFF"
    COLD = "COLD"
    WARM = "WARM"
    HOT = "HOT"
    AUTOMATIC = "AUTOMATIC"


class ServiceState(StrEnum):
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    OFFLINE = "OFFLINE"
    DISABLED = "DISABLED"


class ModelStatus(StrEnum):
    ACTIVE = "active"
    BETA = "beta"
    DEPRECATED = "deprecated"
    COMING_SOON = "coming_soon"


class ModelCategory(StrEnum):
    """S0 `ModelCategory` (11 values). Registry entries keep seed 001's free-text categories."""

    VISION_CLASSIFICATION = "vision_classification"
    VISION_DETECTION = "vision_detection"
    VISION_SEGMENTATION = "vision_segmentation"
    AUDIO_STT = "audio_stt"
    AUDIO_SPEAKER = "audio_speaker"
    SCIENTIFIC_PROTEIN = "scientific_protein"
    SCIENTIFIC_MATH = "scientific_math"
    MEDICAL_IMAGING = "medical_imaging"
    GEOSPATIAL = "geospatial"
    GENERATIVE_3D = "generative_3d"
    LLM_TEXT = "llm_text"


class ModelSpecialty(StrEnum):
    """S0 `ModelSpecialty` (12 values)."""

    IMAGE_CLASSIFICATION = "image_classification"
    OBJECT_DETECTION = "object_detection"
    INSTANCE_SEGMENTATION = "instance_segmentation"
    SPEECH_TO_TEXT = "speech_to_text"
    SPEAKER_IDENTIFICATION = "speaker_identification"
    PROTEIN_FOLDING = "protein_folding"
    PROTEIN_EMBEDDINGS = "protein_embeddings"
    GEOMETRY_REASONING = "geometry_reasoning"
    MEDICAL_SEGMENTATION = "medical_segmentation"
    SATELLITE_ANALYSIS = "satellite_analysis"
    RECONSTRUCTION_3D = "3d_reconstruction"
    TEXT_GENERATION = "text_generation"


# ----------------------------------------------------------------------------- scalars


def _exact_money(value: Any) -> Any:
    # float -> Decimal would keep the binary error (or hide it behind str()); demand exact input.
    if isinstance(value, float):
        raise ValueError(f"money must be a quoted decimal string, not a float (write '{value}')")
    if isinstance(value, bool):
        raise ValueError("money must be a decimal, not a boolean")
    return value


Money = Annotated[Decimal, BeforeValidator(_exact_money), Field(ge=0, allow_inf_nan=False)]
# What a self-hosted instance, model or service charges: a zero would bill GPU time or a tenant's
# call at $0 (and a zero instance row passes the base x markup check), so it must be positive.
Price = Annotated[Decimal, BeforeValidator(_exact_money), Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[Decimal, BeforeValidator(_exact_money), Field(ge=0, le=10)]
Tier = Annotated[int, Field(ge=1, le=5)]

# SageMaker endpoint names allow [a-zA-Z0-9-] only and the endpoint name embeds the model id,
# so deployable ids are lowercase alphanumerics and hyphens.
DeployableId = Annotated[str, Field(pattern=r"^[a-z0-9](-?[a-z0-9])*$", max_length=40)]
# Registry ids and aliases come from seed 001 and may contain dots (pyannote-diarization-3.1).
LooseId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]

BillingUnit = Literal["image", "audio_minute", "video_minute", "request", "3d_model"]

# Which pricing field prices one unit of each billing unit (same names on model and service).
UNIT_PRICE_FIELD: dict[str, str] = {
    "image": "per_image",
    "audio_minute": "per_minute_audio",
    "video_minute": "per_minute_video",
    "request": "per_request",
    "3d_model": "per_3d_model",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------- instances


class InstanceType(_Frozen):
    """One row of S0's INSTANCE_PRICING table (digest 2.1)."""

    name: str = Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    gpu: str  # "T4", "A10G", "A100"
    gpu_count: int = Field(ge=1)
    vram_gb: int = Field(ge=1)  # total across the instance's GPUs
    base_hourly: Price  # AWS on-demand price
    billed_hourly: Price  # base x (1 + markup), rounded to cents as in the seed
    best_for: str = ""


# ----------------------------------------------------------------------------- models


class ThermalConfig(_Frozen):
    default_state: ThermalState
    scale_to_zero_after_minutes: int = Field(ge=1)
    warmup_time_seconds: int = Field(ge=1)
    min_instances: int = Field(ge=0)
    max_instances: int = Field(ge=1)

    @model_validator(mode="after")
    def _min_le_max(self) -> ThermalConfig:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) > max_instances ({self.max_instances})"
            )
        return self


class ModelPricing(_Frozen):
    """Billed prices (already include the markup; DESIGN 2). `markup` is a fraction (0.75)."""

    hourly_rate: Price
    per_image: Price | None = None
    per_minute_audio: Price | None = None
    per_minute_video: Price | None = None
    per_3d_model: Price | None = None
    per_request: Price | None = None
    markup: Fraction

    def price_for(self, unit: str) -> Decimal | None:
        return getattr(self, UNIT_PRICE_FIELD[unit])


# Media type -> coarse modality, for selecting models by what they take and give.
_MODALITY_BY_TYPE: dict[str, str] = {
    "text/fasta": "protein",
    "text/x-fasta": "protein",
    "application/pdb": "protein",
    "application/mmcif": "protein",
    "application/dicom": "volume",
    "application/nifti": "volume",
    "application/json": "text",
    "text/plain": "text",
}
_MODALITY_BY_PREFIX: dict[str, str] = {
    "image/": "image",
    "audio/": "audio",
    "video/": "video",
    "model/": "3d",
    "text/": "text",
}


def modalities_of(formats: list[str]) -> list[str]:
    """Coarse modalities of a list of media types, in first-seen order, without duplicates."""
    out: list[str] = []
    for fmt in formats:
        kind = _MODALITY_BY_TYPE.get(fmt) or next(
            (m for p, m in _MODALITY_BY_PREFIX.items() if fmt.startswith(p)), "other"
        )
        if kind not in out:
            out.append(kind)
    return out


class SelfHostedModel(_Frozen):
    """A fully specified, deployable self-hosted model (seed 000 `SageMakerModelConfig`)."""

    id: DeployableId
    display_name: str
    description: str
    category: ModelCategory
    specialty: ModelSpecialty
    image: str  # ECR repository:tag without the registry host (the backend prefixes it)
    instance_type: str
    environment: dict[str, str] = Field(default_factory=dict)
    model_data_url: str | None = None
    parameters: int = Field(ge=0)  # 0 where the seed gives 0 (pipelines, unknown)
    accuracy: str | None = None
    benchmark: str | None = None
    capabilities: list[str]
    input_formats: list[str] = Field(min_length=1)
    output_formats: list[str] = Field(min_length=1)
    input_modalities: list[str] = Field(default_factory=list)  # derived when not given
    output_modalities: list[str] = Field(default_factory=list)
    thermal: ThermalConfig
    pricing: ModelPricing
    min_tier: Tier
    requires_gpu: bool = True
    gpu_memory_gb: int = Field(ge=0)
    status: ModelStatus = ModelStatus.ACTIVE
    license: str
    license_url: str | None = None
    commercial_use_notes: str | None = None
    hipaa_eligible: bool = False
    aliases: list[LooseId] = Field(default_factory=list)
    seed_ref: str | None = None  # where the spec comes from, e.g. "S0 L291"
    deployable: Literal[True] = True

    @model_validator(mode="before")
    @classmethod
    def _derive_modalities(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("input_modalities") and isinstance(data.get("input_formats"), list):
                data["input_modalities"] = modalities_of(data["input_formats"])
            if not data.get("output_modalities") and isinstance(data.get("output_formats"), list):
                data["output_modalities"] = modalities_of(data["output_formats"])
        return data


class RegistryEntry(_Frozen):
    """A seed-001 id with no deployable spec: listed and searchable, never selected or deployed.

    Only the six columns seed 001 carries exist here; no price, instance or thermal data is
    invented. Values cut off in the seed are None (`truncated` says the row was cut).
    """

    id: LooseId
    display_name: str
    description: str  # as stored; may be cut short when `truncated`
    category: str | None = None
    specialty: str | None = None
    section: str  # the seed's section header, e.g. "Computer Vision / OCR"
    tags: list[str] = Field(default_factory=list)
    truncated: bool = False
    seed_ref: str
    deployable: Literal[False] = False


# ----------------------------------------------------------------------------- services


class ServicePricing(_Frozen):
    """What a tenant pays per unit for a call through the service. `markup` is a fraction."""

    per_image: Price | None = None
    per_minute_audio: Price | None = None
    per_minute_video: Price | None = None
    per_request: Price | None = None
    per_3d_model: Price | None = None
    markup: Fraction

    def price_for(self, unit: str) -> Decimal | None:
        return getattr(self, UNIT_PRICE_FIELD[unit])


class OperationOption(_Frozen):
    """A documented key of a job's `options`, checked by the plan before any cost
    (models_catalog/operation_options.py): number / integer (with bounds), box ([x1, y1, x2, y2]
    pixels), bands (names of the raster's bands, in order), location (a path or s3:// URI)."""

    type: Literal["number", "integer", "box", "bands", "location"]
    description: str
    minimum: float | None = None
    maximum: float | None = None


class ServiceOperation(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9]+(/[a-z0-9]+)*$")  # "detect", "protein/fold"
    path: str  # "/perception/detect"
    method: Literal["POST"] = "POST"  # every seed endpoint is POST
    description: str
    required_models: list[str] = Field(min_length=1)
    optional_models: list[str] = Field(default_factory=list)
    unit: BillingUnit
    long_running: bool = False
    content_types: list[str] = Field(min_length=1)  # accepted input media types
    output_formats: list[str] = Field(min_length=1)
    options: dict[str, OperationOption] = Field(default_factory=dict)  # the only keys accepted

    @property
    def models(self) -> list[str]:
        return [*self.required_models, *self.optional_models]


class MidLevelService(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    display_name: str
    description: str
    min_tier: Tier
    required_models: list[str] = Field(min_length=1)
    optional_models: list[str] = Field(default_factory=list)
    default_state: ServiceState = ServiceState.DISABLED
    graceful_degradation: bool = True
    pricing: ServicePricing
    operations: list[ServiceOperation] = Field(min_length=1)
    seed_ref: str | None = None

    @property
    def models(self) -> list[str]:
        return [*self.required_models, *self.optional_models]

    def find_operation(self, op_id: str) -> ServiceOperation | None:
        key = op_id.strip("/").lower()
        return next((op for op in self.operations if op.id == key), None)
