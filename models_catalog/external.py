"""External providers and models (seed 002), routed through LiteLLM.

The data lives in `models_catalog/data/external.yaml`; this module gives it types, validates it and
answers the questions the rest of the project asks of it:

- which providers exist, which LiteLLM provider serves each, and whether a provider is
  *configured* (the environment variable named by `api_key_env` is set);
- which models exist, under which unique LiteLLM id, at what provider cost;
- what a call costs and what it is billed: billed = cost x (1 + markup), markup a fraction
  (0.40 = 40 %, DESIGN section 2). Prices in the data are provider costs, never billed prices;
- which models a model falls back to (the seed's LiteLLM router fallbacks).

Seed contradictions and how the data resolves them are listed at the top of the YAML file.
Money is `Decimal`; a YAML price written as a float is rejected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator

from models_catalog.errors import CatalogValidationError
from models_catalog.types import ModelStatus, Money, Tier

EXTERNAL_FILE = "external.yaml"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

# S2 `ProviderCategory` (10 values).
ProviderCategory = Literal[
    "text_generation",
    "image_generation",
    "video_generation",
    "audio_generation",
    "speech_to_text",
    "text_to_speech",
    "embedding",
    "search",
    "3d_generation",
    "reasoning",
]
# Models also use `vision` and `code` (outside the seed's type, kept: they mean something).
# The seed's one `embeddings` (cohere-embed-v4) is normalised to `embedding`.
ExternalModelCategory = Literal[
    "text_generation",
    "image_generation",
    "video_generation",
    "audio_generation",
    "speech_to_text",
    "text_to_speech",
    "embedding",
    "search",
    "3d_generation",
    "reasoning",
    "vision",
    "code",
]
PricingType = Literal["per_token", "per_request", "per_second", "per_image", "per_minute"]
InputModality = Literal["text", "image", "audio", "video", "pdf"]
OutputModality = Literal["text", "image", "audio", "video", "3d", "embedding"]
Compliance = Literal["SOC2", "GDPR", "HIPAA"]
AuthType = Literal["api_key", "bearer", "oauth"]
ProviderStatus = Literal["active", "disabled"]
# LiteLLM's `mode` for a model (model_info.mode in a proxy config); None: LiteLLM has no API for it.
LiteLLMMode = Literal[
    "chat", "embedding", "image_generation", "video_generation", "audio_speech",
    "audio_transcription", "search",
]  # fmt: skip

ProviderId = str
ModelId = str

_SLUG = r"^[a-z0-9](-?[a-z0-9])*$"


class ExternalCatalogError(CatalogValidationError):
    """external.yaml is invalid; `problems` lists every problem found, one a line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, source="external catalog")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ----------------------------------------------------------------------------- providers


class Provider(_Frozen):
    """An external AI provider (S2 `ExternalProvider`)."""

    id: ProviderId = Field(pattern=_SLUG)
    display_name: str
    category: ProviderCategory
    description: str = ""
    # LiteLLM's provider name (`openai`, `anthropic`, `gemini`, ...) when LiteLLM can call this
    # provider; None when it has no adapter (those models are catalogued but not routable yet).
    litellm_provider: str | None
    # Name of the environment variable holding the credential. The provider is *configured* only
    # when it is set. Several provider entries may share one (openai, openai-images, ...).
    api_key_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    # LiteLLM `api_base` override; None = LiteLLM's default endpoint for the provider.
    api_base: str | None = None
    # The vendor API root as the seed documents it (apiBaseUrl). Informational: LiteLLM builds its
    # own URLs, and some of these (…/v1) would break it as an api_base.
    vendor_api_url: str | None = None
    auth_type: AuthType = "bearer"
    secret_name: str | None = None  # AWS Secrets Manager name (seed secretName)
    regions: list[str] = Field(default_factory=list)
    rate_limit_rpm: int | None = Field(default=None, ge=1)
    rate_limit_tpm: int | None = Field(default=None, ge=1)
    features: list[str] = Field(default_factory=list)
    compliance: list[Compliance] = Field(default_factory=list)
    status: ProviderStatus = "active"
    website: str | None = None
    docs_url: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hipaa_compliant(self) -> bool:
        return "HIPAA" in self.compliance

    def is_configured(self, environ: Mapping[str, str] | None = None) -> bool:
        """True when the credential variable is set, non-blank, in `environ` (or os.environ)."""
        env = os.environ if environ is None else environ
        return bool(env.get(self.api_key_env, "").strip())


# ----------------------------------------------------------------------------- pricing


class ExternalPricing(_Frozen):
    """Provider cost (what the provider charges us) plus the markup we bill on top of it.

    `*_per_1k` rates are per 1,000 input units: tokens, or characters where `input_unit` says so
    (text-to-speech). `markup` is a fraction; it is filled from the file-level `markup` when a
    model does not set its own.
    """

    type: PricingType
    input_per_1k: Money | None = None
    output_per_1k: Money | None = None
    cached_input_per_1k: Money | None = None  # prompt-cache reads; None: the input rate
    # Prompt-cache writes (Anthropic: 1.25 x input for the 5-minute cache); None: the input rate.
    cache_write_input_per_1k: Money | None = None
    # Writes to Anthropic's 1-hour cache (2 x input); None: the 5-minute write rate.
    cache_write_1h_input_per_1k: Money | None = None
    long_context_input_per_1k: Money | None = None
    long_context_output_per_1k: Money | None = None
    input_unit: Literal["tokens", "characters"] = "tokens"
    per_request: Money | None = None
    per_image: Money | None = None
    per_second: Money | None = None
    per_minute: Money | None = None
    markup: Money

    @model_validator(mode="after")
    def _rate_for_type(self) -> ExternalPricing:
        needed = _REQUIRED_RATE[self.type]
        if getattr(self, needed) is None:
            raise ValueError(f"pricing type {self.type!r} needs {needed}")
        if self.markup >= 1:
            raise ValueError(
                f"markup must be a fraction (0.40 = 40 %), got {self.markup}; "
                "1.40 is the seed's multiplier encoding"
            )
        return self

    @property
    def multiplier(self) -> Decimal:
        return 1 + self.markup

    def billed(self, cost: Decimal) -> Decimal:
        """The billed amount for a provider cost: cost x (1 + markup). Not rounded."""
        return cost * self.multiplier

    def rates(self) -> dict[str, Decimal]:
        """Every cost rate that is set, by field name."""
        return {name: value for name in _RATE_FIELDS if (value := getattr(self, name)) is not None}

    def billed_rates(self) -> dict[str, Decimal]:
        """Every rate that is set, as billed to the tenant (cost x (1 + markup))."""
        return {name: self.billed(value) for name, value in self.rates().items()}


_REQUIRED_RATE: dict[str, str] = {
    "per_token": "input_per_1k",
    "per_request": "per_request",
    "per_image": "per_image",
    "per_second": "per_second",
    "per_minute": "per_minute",
}
_RATE_FIELDS = (
    "input_per_1k",
    "output_per_1k",
    "cached_input_per_1k",
    "cache_write_input_per_1k",
    "cache_write_1h_input_per_1k",
    "long_context_input_per_1k",
    "long_context_output_per_1k",
    "per_request",
    "per_image",
    "per_second",
    "per_minute",
)


class ExternalUsage(_Frozen):
    """What one call consumed. Token counts exclude prompt-cache reads and writes, which are
    counted separately."""

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)  # prompt-cache reads
    cache_write_input_tokens: int = Field(default=0, ge=0)  # prompt-cache writes
    # of which written to a 1-hour cache (Anthropic's `ttl: 1h`)
    cache_write_1h_input_tokens: int = Field(default=0, ge=0)
    characters: int = Field(default=0, ge=0)  # for models priced per 1K characters (TTS)
    images: int = Field(default=0, ge=0)
    seconds: Decimal = Field(default=Decimal(0), ge=0)
    minutes: Decimal = Field(default=Decimal(0), ge=0)
    requests: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _1h_writes_are_writes(self) -> ExternalUsage:
        if self.cache_write_1h_input_tokens > self.cache_write_input_tokens:
            raise ValueError(
                f"cache_write_1h_input_tokens ({self.cache_write_1h_input_tokens}) exceed "
                f"cache_write_input_tokens ({self.cache_write_input_tokens}), which include them"
            )
        return self


class ExternalCost(_Frozen):
    cost: Decimal  # provider cost
    billed: Decimal  # cost x (1 + markup)
    markup: Decimal

    @property
    def margin(self) -> Decimal:
        return self.billed - self.cost


# ----------------------------------------------------------------------------- models

_MODE_BY_CATEGORY: dict[str, LiteLLMMode | None] = {
    "text_generation": "chat",
    "reasoning": "chat",
    "vision": "chat",
    "code": "chat",
    "embedding": "embedding",
    "image_generation": "image_generation",
    "video_generation": "video_generation",
    "audio_generation": "audio_speech",
    "text_to_speech": "audio_speech",
    "speech_to_text": "audio_transcription",
    "3d_generation": None,
}


def _or(rate: Decimal | None, default: Decimal) -> Decimal:
    """A rate the model may leave unset, else the one it falls back to."""
    return rate if rate is not None else default


class ExternalModel(_Frozen):
    """An external model (S2 `ExternalModel`), priced at provider cost."""

    id: ModelId = Field(pattern=_SLUG)
    provider_id: ProviderId
    model_id: str  # the vendor's own model name
    # Unique across the catalog (S2 `models.litellm_id UNIQUE`): the name the orchestrator asks
    # LiteLLM for (the proxy's model_name). Equals the seed's litellmId except where that was not
    # unique (see the YAML header).
    litellm_id: str = Field(min_length=1)
    # The LiteLLM `model` string actually called, when it differs from `litellm_id`, plus extra
    # call parameters (e.g. DALL-E 3 HD = dall-e-3 with quality=hd).
    litellm_model: str | None = None
    litellm_params: dict[str, str | int | bool] = Field(default_factory=dict)
    # Other names the model answers to (the seed LiteLLM yaml's model_name, e.g. gpt-4o).
    aliases: list[str] = Field(default_factory=list)
    display_name: str
    description: str = ""
    category: ExternalModelCategory
    specialty: str | None = None  # seed 002 gives none; kept for parity with self-hosted models
    family: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    input_modalities: list[InputModality] = Field(min_length=1)
    output_modalities: list[OutputModality] = Field(min_length=1)
    context_window: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    pricing: ExternalPricing
    min_tier: Tier = 1  # S1 unified view: "External available to all tiers"
    status: ModelStatus = ModelStatus.ACTIVE
    legacy: bool = False  # the seed's metadata.legacy: callable, but superseded
    successor: ModelId | None = None
    fallbacks: list[ModelId] = Field(default_factory=list)  # set from the file's `fallbacks:`
    seed_ref: str | None = None

    @property
    def litellm_route(self) -> str:
        """The LiteLLM `model` string to call."""
        return self.litellm_model or self.litellm_id

    @property
    def litellm_mode(self) -> LiteLLMMode | None:
        if self.category == "search":
            return "chat" if self.pricing.type == "per_token" else "search"
        return _MODE_BY_CATEGORY[self.category]

    @property
    def primary_mode(self) -> str:
        """S1 unified view's derived `primary_mode`."""
        if "chat" in self.capabilities:
            return "chat"
        if "completion" in self.capabilities:
            return "completion"
        if "embedding" in self.capabilities or self.category == "embedding":
            return "embedding"
        return {
            "image_generation": "image",
            "video_generation": "video",
            "audio_generation": "audio",
            "text_to_speech": "audio",
            "speech_to_text": "transcription",
            "search": "search",
            "3d_generation": "3d",
        }.get(self.category, "other")

    @property
    def supports_functions(self) -> bool:
        return bool({"function_calling", "tool_use", "tool_calling"} & set(self.capabilities))

    @property
    def supports_vision(self) -> bool:
        return "vision" in self.capabilities

    @property
    def supports_streaming(self) -> bool:
        return "streaming" in self.capabilities

    @property
    def available(self) -> bool:
        """Not deprecated (whether its provider is configured is the catalog's question)."""
        return self.status != ModelStatus.DEPRECATED

    def cost(self, usage: ExternalUsage) -> ExternalCost:
        """Provider cost and billed amount of one call (exact Decimals, not rounded).

        Per-token models: input (or characters, for per-character models) + output + cached input
        (at the cached rate when there is one) + prompt-cache writes (at the cache write rate when
        there is one, else the input rate; 1-hour writes at their own rate when there is one),
        plus the per-request fee where the model has one (Perplexity's search fee). Other types:
        units x rate. Long-context rates are not applied: the seed gives no threshold.
        """
        p = self.pricing
        thousand = Decimal(1000)
        cost = Decimal(0)
        if p.type == "per_token":
            assert p.input_per_1k is not None
            units = usage.characters if p.input_unit == "characters" else usage.input_tokens
            cost += Decimal(units) / thousand * p.input_per_1k
            cost += Decimal(usage.output_tokens) / thousand * (p.output_per_1k or Decimal(0))
            cached_rate = _or(p.cached_input_per_1k, p.input_per_1k)
            cost += Decimal(usage.cached_input_tokens) / thousand * cached_rate
            write_rate = _or(p.cache_write_input_per_1k, p.input_per_1k)
            write_1h_rate = _or(p.cache_write_1h_input_per_1k, write_rate)
            written_5m = usage.cache_write_input_tokens - usage.cache_write_1h_input_tokens
            cost += Decimal(written_5m) / thousand * write_rate
            cost += Decimal(usage.cache_write_1h_input_tokens) / thousand * write_1h_rate
            if p.per_request is not None:
                cost += usage.requests * p.per_request
        elif p.type == "per_request":
            cost = usage.requests * (p.per_request or Decimal(0))
        elif p.type == "per_image":
            cost = usage.images * (p.per_image or Decimal(0))
        elif p.type == "per_second":
            cost = usage.seconds * (p.per_second or Decimal(0))
        elif p.type == "per_minute":
            cost = usage.minutes * (p.per_minute or Decimal(0))
        return ExternalCost(cost=cost, billed=p.billed(cost), markup=p.markup)


# ----------------------------------------------------------------------------- catalog


class ExternalCatalog(_Frozen):
    providers: dict[ProviderId, Provider]
    models: dict[ModelId, ExternalModel]
    markup: Decimal

    @property
    def fallbacks(self) -> dict[ModelId, list[ModelId]]:
        return {m.id: list(m.fallbacks) for m in self.models.values() if m.fallbacks}

    def get(self, name: str) -> ExternalModel | None:
        """A model by id, alias or LiteLLM id."""
        if name in self.models:
            return self.models[name]
        for model in self.models.values():
            if name in model.aliases or name == model.litellm_id:
                return model
        return None

    def by_litellm_id(self, litellm_id: str) -> ExternalModel | None:
        return next((m for m in self.models.values() if m.litellm_id == litellm_id), None)

    def provider_of(self, model: ExternalModel | str) -> Provider:
        model_obj = self.models[model] if isinstance(model, str) else model
        return self.providers[model_obj.provider_id]

    def models_of(self, provider_id: ProviderId) -> list[ExternalModel]:
        return [m for m in self.models.values() if m.provider_id == provider_id]

    def configured_providers(self, environ: Mapping[str, str] | None = None) -> list[Provider]:
        return [
            p for p in self.providers.values() if p.status == "active" and p.is_configured(environ)
        ]

    def routable_models(self, environ: Mapping[str, str] | None = None) -> list[ExternalModel]:
        """Models that can be called now: provider active, configured and served by LiteLLM;
        model not deprecated."""
        ok = {p.id for p in self.configured_providers(environ) if p.litellm_provider}
        return [m for m in self.models.values() if m.provider_id in ok and m.available]


# ----------------------------------------------------------------------------- loading


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when present), except that a key repeated in one mapping is an
    error: YAML's default keeps the last value silently, so a pasted second `max_instances:` or a
    second top-level `models:` list would quietly replace the first."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<:` merges; keys written beside it legitimately override
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable key: the base constructor reports it
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def yaml_error(exc: yaml.YAMLError) -> str:
    """` at line L, column C: what` (one line) for a YAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(exc, "problem", None) or str(exc)
    return f"{where}: {' '.join(str(what).split())}"


MAX_FALLBACKS = 2  # workflows/llm.py CALL_TIMEOUT gives the model and these 120 s each
_TOP_LEVEL_KEYS = {"version", "markup", "providers", "models", "fallbacks"}


def load_external(
    data_dir: Path,
) -> tuple[dict[ProviderId, Provider], dict[ModelId, ExternalModel]]:
    """Providers and models from `data_dir / "external.yaml"`, validated.

    Raises `ExternalCatalogError` listing every problem found.
    """
    catalog = load_external_catalog(data_dir)
    return catalog.providers, catalog.models


def load_external_catalog(data_dir: Path | None = None) -> ExternalCatalog:
    path = (DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)) / EXTERNAL_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExternalCatalogError([f"{path}: cannot read: {exc}"]) from exc
    try:
        doc = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ExternalCatalogError([f"{path}: not valid YAML{yaml_error(exc)}"]) from exc
    return parse_external(doc, source=str(path))


def parse_external(doc: Any, source: str = EXTERNAL_FILE) -> ExternalCatalog:
    """Validate an already parsed document. Collects every problem before raising."""
    problems: list[str] = []

    def problem(msg: str) -> None:
        problems.append(f"{source}: {msg}")

    if not isinstance(doc, Mapping):
        raise ExternalCatalogError([f"{source}: top level must be a mapping"])
    for key in sorted(set(doc) - _TOP_LEVEL_KEYS):
        problem(f"unknown top-level key {key!r} (allowed: {', '.join(sorted(_TOP_LEVEL_KEYS))})")

    markup = _parse_markup(doc.get("markup"), problem)

    # providers
    providers: dict[ProviderId, Provider] = {}
    for i, raw in enumerate(_as_list(doc.get("providers"), "providers", problem)):
        where = f"providers[{i}]" + (f" ({raw.get('id')})" if isinstance(raw, Mapping) else "")
        prov = _validate(Provider, raw, where, problem)
        if prov is None:
            continue
        if prov.id in providers:
            problem(f"{where}: duplicate provider id {prov.id!r}")
            continue
        providers[prov.id] = prov

    # models
    models: dict[ModelId, ExternalModel] = {}
    seen_litellm: dict[str, str] = {}
    seen_routes: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}
    for i, raw in enumerate(_as_list(doc.get("models"), "models", problem)):
        where = f"models[{i}]" + (f" ({raw.get('id')})" if isinstance(raw, Mapping) else "")
        if isinstance(raw, Mapping):
            if "fallbacks" in raw:
                problem(f"{where}: set fallbacks in the top-level `fallbacks:` section, not here")
                continue
            raw = _with_default_markup(raw, markup)
        model = _validate(ExternalModel, raw, where, problem)
        if model is None:
            continue
        if model.id in models:
            problem(f"{where}: duplicate model id {model.id!r}")
            continue
        if model.provider_id not in providers:
            problem(f"{where}: unknown provider {model.provider_id!r}")
        if model.litellm_id in seen_litellm:
            problem(
                f"{where}: duplicate litellm_id {model.litellm_id!r} "
                f"(also {seen_litellm[model.litellm_id]!r}); litellm ids must be unique"
            )
        else:
            seen_litellm[model.litellm_id] = model.id
        route_key = (model.litellm_route, tuple(sorted(model.litellm_params.items())))
        if route_key in seen_routes:
            problem(
                f"{where}: same LiteLLM model and parameters as {seen_routes[route_key]!r} "
                f"({model.litellm_route!r}); give it distinct litellm_params or drop it"
            )
        else:
            seen_routes[route_key] = model.id
        models[model.id] = model

    _check_names(models, problem)
    for model in models.values():
        if model.successor is not None and model.successor not in models:
            problem(f"model {model.id!r}: unknown successor {model.successor!r}")

    fallbacks = _parse_fallbacks(doc.get("fallbacks"), models, providers, problem)

    if problems:
        raise ExternalCatalogError(problems)
    for model_id, targets in fallbacks.items():
        models[model_id] = models[model_id].model_copy(update={"fallbacks": targets})
    return ExternalCatalog(providers=providers, models=models, markup=markup)


def _as_list(value: Any, key: str, problem: Any) -> list[Any]:
    if value is None:
        problem(f"missing `{key}:` list")
        return []
    if not isinstance(value, list):
        problem(f"`{key}:` must be a list")
        return []
    return value


def _parse_markup(value: Any, problem: Any) -> Decimal:
    default = Decimal("0.40")
    if value is None:
        problem('missing `markup:` (the external markup as a fraction, e.g. "0.40")')
        return default
    if isinstance(value, float | bool):
        problem(f"markup must be a quoted decimal string, not {type(value).__name__} {value!r}")
        return default
    try:
        markup = Decimal(str(value))
    except ArithmeticError:
        problem(f"markup {value!r} is not a decimal")
        return default
    if not (0 <= markup < 1):
        problem(f"markup must be a fraction in [0, 1) (0.40 = 40 %), got {markup}")
        return default
    return markup


def _with_default_markup(raw: Mapping[str, Any], markup: Decimal) -> Mapping[str, Any]:
    pricing = raw.get("pricing")
    if isinstance(pricing, Mapping) and "markup" not in pricing:
        return {**raw, "pricing": {**pricing, "markup": str(markup)}}
    return raw


def _validate(cls: type[_Frozen], raw: Any, where: str, problem: Any) -> Any:
    if not isinstance(raw, Mapping):
        problem(f"{where}: must be a mapping")
        return None
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"]) or "(entry)"
            problem(f"{where}: {loc}: {err['msg']}")
        return None


def _check_names(models: Mapping[ModelId, ExternalModel], problem: Any) -> None:
    """Ids and aliases share one namespace: every lookup name resolves to one model."""
    owner: dict[str, str] = {m.id: m.id for m in models.values()}
    for model in models.values():
        for alias in model.aliases:
            if alias in owner:
                problem(f"model {model.id!r}: alias {alias!r} is already taken by {owner[alias]!r}")
            else:
                owner[alias] = model.id


def _parse_fallbacks(
    value: Any,
    models: Mapping[ModelId, ExternalModel],
    providers: Mapping[ProviderId, Provider],
    problem: Any,
) -> dict[ModelId, list[ModelId]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problem("`fallbacks:` must map a model id to a list of model ids")
        return {}
    out: dict[ModelId, list[ModelId]] = {}
    for source, targets in value.items():
        where = f"fallbacks[{source}]"
        if source not in models:
            hint = _alias_hint(source, models.values())
            problem(f"{where}: unknown model {source!r}{hint}")
            continue
        if (
            not isinstance(targets, list)
            or not targets
            or not all(isinstance(t, str) for t in targets)
        ):
            problem(f"{where}: must be a non-empty list of model ids")
            continue
        ok = True
        for target in targets:
            if target == source:
                problem(f"{where}: a model cannot fall back to itself")
                ok = False
            elif target not in models:
                problem(f"{where}: unknown model {target!r}{_alias_hint(target, models.values())}")
                ok = False
            elif models[target].status == ModelStatus.DEPRECATED:
                problem(f"{where}: {target!r} is deprecated")
                ok = False
            elif models[target].litellm_mode != models[source].litellm_mode:
                problem(
                    f"{where}: {target!r} ({models[target].litellm_mode}) cannot stand in for "
                    f"{source!r} ({models[source].litellm_mode})"
                )
                ok = False
            elif (
                models[target].provider_id in providers
                and providers[models[target].provider_id].litellm_provider is None
            ):
                problem(
                    f"{where}: {target!r} cannot be a fallback: its provider "
                    f"{models[target].provider_id!r} has no LiteLLM adapter"
                )
                ok = False
        if len(set(targets)) != len(targets):
            problem(f"{where}: lists a model twice")
            ok = False
        if len(targets) > MAX_FALLBACKS:
            # each deployment tried gets the Router's timeout within one call activity
            problem(f"{where}: at most {MAX_FALLBACKS} fallbacks per model, got {len(targets)}")
            ok = False
        if ok:
            out[source] = list(targets)
    return out


def _alias_hint(name: str, models: Iterable[ExternalModel]) -> str:
    for model in models:
        if name in model.aliases or name == model.litellm_id:
            return f" (that is an alias of {model.id!r}; use the id)"
    return ""
