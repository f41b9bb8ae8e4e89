"""The catalog: one validated, read-only view of every model, service and provider.

`load_catalog()` reads the YAML files in `models_catalog/data/` (or an override directory, e.g.
`settings.catalog_dir`), validates every entry and every cross-reference, and raises one
`CatalogValidationError` listing all problems (file and entry) instead of a traceback.
Nothing else in the project hard-codes model facts; it asks this object.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from models_catalog.errors import (
    CatalogValidationError,
    NotDeployableError,
    UnknownModelError,
    UnknownOperationError,
    UnknownServiceError,
)
from models_catalog.external import (
    ExternalModel,
    Provider,
    UniqueKeyLoader,
    load_external,
    yaml_error,
)
from models_catalog.types import (
    UNIT_PRICE_FIELD,
    InstanceType,
    MidLevelService,
    RegistryEntry,
    SelfHostedModel,
    ServiceOperation,
)

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Catalog:
    models: dict[str, SelfHostedModel]  # deployable, by canonical id
    registry_entries: dict[str, RegistryEntry]  # listed, not deployable
    instances: dict[str, InstanceType]
    services: dict[str, MidLevelService]
    providers: dict[str, Provider] = field(default_factory=dict)
    external_models: dict[str, ExternalModel] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> canonical id
    data_dir: Path = DATA_DIR

    # ------------------------------------------------------------------ models

    def resolve_model_id(self, name: str) -> str:
        """Canonical id for an id or alias (any case). Registry ids resolve to themselves."""
        key = name.strip().lower()
        if key in self.models or key in self.registry_entries:
            return key
        if key in self.aliases:
            return self.aliases[key]
        raise UnknownModelError(name, self._suggest_models(key))

    def model(self, id_or_alias: str) -> SelfHostedModel:
        """The deployable model; `NotDeployableError` for a registry entry."""
        model_id = self.resolve_model_id(id_or_alias)
        if model_id in self.registry_entries:
            raise NotDeployableError(model_id)
        return self.models[model_id]

    def deployable_models(self) -> list[SelfHostedModel]:
        return list(self.models.values())

    def instance_for(self, model: SelfHostedModel | str) -> InstanceType:
        obj = self.model(model) if isinstance(model, str) else model
        return self.instances[obj.instance_type]

    def search(self, text: str) -> list[SelfHostedModel | RegistryEntry]:
        """Deployable models then registry entries whose names or descriptions contain `text`."""
        needle = text.strip().lower()
        hits: list[SelfHostedModel | RegistryEntry] = []
        for m in self.models.values():
            hay = [
                m.id,
                *m.aliases,
                m.display_name,
                m.description,
                m.category,
                m.specialty,
                *m.capabilities,
            ]
            if any(needle in str(h).lower() for h in hay):
                hits.append(m)
        for r in self.registry_entries.values():
            hay = [
                r.id,
                r.display_name,
                r.description,
                r.category or "",
                r.specialty or "",
                r.section,
                *r.tags,
            ]
            if any(needle in h.lower() for h in hay):
                hits.append(r)
        return hits

    def _suggest_models(self, key: str) -> list[str]:
        names = [*self.models, *self.aliases, *self.registry_entries]
        return suggest(key, names, canonical=self.aliases)

    # ---------------------------------------------------------------- services

    def service(self, service_id: str) -> MidLevelService:
        key = service_id.strip().strip("/").lower()
        if key not in self.services:
            raise UnknownServiceError(service_id, suggest(key, list(self.services)))
        return self.services[key]

    def operation(self, service_id: str, op_id: str) -> ServiceOperation:
        """An operation by id ("protein/fold") or full path ("/scientific/protein/fold")."""
        svc = self.service(service_id)
        key = op_id.strip().strip("/").lower()
        if key.startswith(svc.id + "/"):
            key = key[len(svc.id) + 1 :]
        op = svc.find_operation(key)
        if op is None:
            raise UnknownOperationError(svc.id, op_id, [o.id for o in svc.operations])
        return op

    def operations(self) -> list[tuple[MidLevelService, ServiceOperation]]:
        return [(svc, op) for svc in self.services.values() for op in svc.operations]


def suggest(key: str, names: list[str], canonical: dict[str, str] | None = None) -> list[str]:
    """Close names (substring hits first, then difflib), mapped to canonical ids, deduplicated."""
    hits = [n for n in names if len(key) >= 3 and key in n]
    hits += difflib.get_close_matches(key, names, n=5, cutoff=0.6)
    out: list[str] = []
    for name in hits:
        name = (canonical or {}).get(name, name)
        if name not in out:
            out.append(name)
    return out[:5]


# -------------------------------------------------------------------------- loading


def load_catalog(data_dir: Path | None = None) -> Catalog:
    """Load and validate the catalog from `data_dir` (default: the bundled data, cached)."""
    if data_dir is None:
        return _load_bundled()
    return _load(Path(data_dir))


@functools.cache
def _load_bundled() -> Catalog:
    return _load(DATA_DIR)


# The bundled files; an override directory must hold the same names (plus external.yaml).
FILES = {
    "instances": "instances.yaml",
    "models": "self_hosted.yaml",
    "registry": "registry_entries.yaml",
    "services": "services.yaml",
}
_CENT = Decimal("0.01")
_M = TypeVar("_M", bound=BaseModel)


# top-level list key of each file, and other top-level keys it may have
_LIST_KEY = {
    "instances": "instances",
    "models": "models",
    "registry": "entries",
    "services": "services",
}
_EXTRA_KEYS = {"instances": {"markup"}}


def _load(data_dir: Path) -> Catalog:
    if not data_dir.is_dir():
        raise CatalogValidationError([f"{data_dir}: not a directory"], source="catalog")
    problems: list[str] = []
    docs = {
        kind: _top_level(
            _read_yaml(data_dir / name, problems),
            name,
            _LIST_KEY[kind],
            _EXTRA_KEYS.get(kind, set()),
            problems,
        )
        for kind, name in FILES.items()
    }

    markup = _markup(docs["instances"], problems)
    instances = _index(InstanceType, docs["instances"], "instances", "instance", problems)
    models = _index(SelfHostedModel, docs["models"], "models", "model", problems)
    registry = _index(RegistryEntry, docs["registry"], "registry", "entry", problems)
    services = _index(MidLevelService, docs["services"], "services", "service", problems)
    providers, external_models = _load_external(data_dir, problems)

    aliases = _check_names(models, registry, external_models, problems)
    if markup is not None:
        _check_instances(instances, markup, problems)
    _check_models(models, instances, markup, problems)
    _check_services(services, models, registry, aliases, problems)
    if problems:
        raise CatalogValidationError(problems, source=f"catalog in {data_dir}")
    return Catalog(
        models=models,
        registry_entries=registry,
        instances=instances,
        services=services,
        providers=providers,
        external_models=external_models,
        aliases=aliases,
        data_dir=data_dir,
    )


def _load_external(
    data_dir: Path, problems: list[str]
) -> tuple[dict[str, Provider], dict[str, ExternalModel]]:
    try:
        return load_external(data_dir)
    except (ValueError, OSError, yaml.YAMLError) as exc:  # it lists its own problems; keep them
        listed: Iterable[str] | None = getattr(exc, "problems", None)
        problems.extend(listed if listed else [f"external.yaml: {exc}"])
        return {}, {}


# ------------------------------------------------------------------ reading and entry validation

# libyaml's safe loader when present (~7x faster than the pure-Python one, same results), which
# also rejects a key repeated in one mapping instead of keeping the last value.
_YAML_LOADER = UniqueKeyLoader
_MISSING = object()  # the file could not be read (its problem is already recorded)


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{path.name}: missing file ({path})")
        return _MISSING
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: cannot read: {exc}")
        return _MISSING
    try:
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        problems.append(f"{path.name}: invalid YAML{yaml_error(exc)}")
        return _MISSING


def _top_level(doc: Any, file: str, key: str, extra: set[str], problems: list[str]) -> Any:
    """The document if its top level is a mapping with `key:` (and only allowed keys)."""
    if doc is _MISSING:
        return _MISSING
    if not isinstance(doc, dict) or key not in doc:
        problems.append(f"{file}: top level must be a mapping with a `{key}:` list")
        return _MISSING
    for unknown in sorted(set(map(str, doc)) - {key, *extra}):
        problems.append(f"{file}: unknown top-level key {unknown!r}")
    return doc


def _markup(doc: Any, problems: list[str]) -> Decimal | None:
    if doc is _MISSING:
        return None
    value = doc.get("markup")
    if not isinstance(value, str | int) or isinstance(value, bool):
        problems.append(f'{FILES["instances"]}: `markup:` must be a quoted decimal ("0.75")')
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        problems.append(f"{FILES['instances']}: markup {value!r} is not a decimal")
        return None


def _index(cls: type[_M], doc: Any, kind: str, noun: str, problems: list[str]) -> dict[str, _M]:
    """Validate each entry on its own, so one bad entry does not hide the others."""
    if doc is _MISSING:
        return {}
    file, key = FILES[kind], _LIST_KEY[kind]
    items = doc[key]
    if not isinstance(items, list):
        problems.append(f"{file}: `{key}:` must be a list")
        return {}
    out: dict[str, _M] = {}
    for i, raw in enumerate(items, start=1):
        ident = raw.get("id", raw.get("name")) if isinstance(raw, dict) else None
        where = f"{file}: {noun} {ident!r}" if ident is not None else f"{file}: {noun} #{i}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        try:
            obj = cls.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(part) for part in err["loc"]) or "(entry)"
                problems.append(f"{where}: {loc}: {err['msg']}")
            continue
        obj_id = str(getattr(obj, "id", None) or getattr(obj, "name", ""))  # instances: by name
        if obj_id in out:
            problems.append(f"{where}: duplicate {noun} id {obj_id!r}")
            continue
        out[obj_id] = obj
    return out


# ------------------------------------------------------------------ cross-reference checks


def _check_names(
    models: dict[str, SelfHostedModel],
    registry: dict[str, RegistryEntry],
    external: dict[str, ExternalModel],
    problems: list[str],
) -> dict[str, str]:
    """Every lookup name (id or alias) must denote one model. Returns alias -> canonical id."""
    owner: dict[str, str] = {m: f"self-hosted model {m!r}" for m in models}
    for rid in registry:
        if rid in owner:
            problems.append(f"{FILES['registry']}: entry {rid!r}: id is also a deployable model")
        else:
            owner[rid] = f"registry entry {rid!r}"
    aliases: dict[str, str] = {}
    for model in models.values():
        for alias in model.aliases:
            if alias in owner:
                problems.append(
                    f"{FILES['models']}: model {model.id!r}: alias {alias!r} "
                    f"collides with {owner[alias]}"
                )
                continue
            owner[alias] = f"alias of {model.id!r}"
            aliases[alias] = model.id
    # External models route through LiteLLM; a name meaning both would route ambiguously.
    # Lookups also accept an external model's LiteLLM id (and try external names first).
    for ext in external.values():
        for name in sorted({ext.id, ext.litellm_id, *ext.aliases}):
            if name.lower() in owner:
                problems.append(
                    f"external.yaml: model {ext.id!r}: name {name!r} "
                    f"collides with {owner[name.lower()]}"
                )
    return aliases


def _check_instances(
    instances: dict[str, InstanceType], markup: Decimal, problems: list[str]
) -> None:
    for inst in instances.values():
        expected = (inst.base_hourly * (1 + markup)).quantize(_CENT, rounding=ROUND_HALF_UP)
        if inst.billed_hourly != expected:
            problems.append(
                f"{FILES['instances']}: instance {inst.name!r}: billed_hourly {inst.billed_hourly} "
                f"!= base {inst.base_hourly} x (1 + {markup}) = {expected} (rounded to cents)"
            )


def _check_models(
    models: dict[str, SelfHostedModel],
    instances: dict[str, InstanceType],
    markup: Decimal | None,
    problems: list[str],
) -> None:
    for m in models.values():
        where = f"{FILES['models']}: model {m.id!r}"
        if markup is not None and m.pricing.markup != markup:
            problems.append(
                f"{where}: pricing.markup {m.pricing.markup} != the instance table's "
                f"markup {markup}"
            )
        inst = instances.get(m.instance_type)
        if inst is None:
            problems.append(
                f"{where}: instance type {m.instance_type!r} is not in the price "
                f"table ({FILES['instances']})"
            )
            continue
        if m.gpu_memory_gb > inst.vram_gb:
            problems.append(
                f"{where}: gpu_memory_gb {m.gpu_memory_gb} exceeds the "
                f"{inst.vram_gb} GB VRAM of {inst.name}"
            )
        if m.pricing.hourly_rate != inst.billed_hourly:
            problems.append(
                f"{where}: pricing.hourly_rate {m.pricing.hourly_rate} != "
                f"{inst.name}'s billed rate {inst.billed_hourly}"
            )


def _check_services(
    services: dict[str, MidLevelService],
    models: dict[str, SelfHostedModel],
    registry: dict[str, RegistryEntry],
    aliases: dict[str, str],
    problems: list[str],
) -> None:
    def ref(where: str, name: str) -> SelfHostedModel | None:
        if name in models:
            return models[name]
        if name in aliases:
            problems.append(
                f"{where}: {name!r} is an alias, use the canonical id {aliases[name]!r}"
            )
        elif name in registry:
            problems.append(f"{where}: {name!r} is a registry entry, not a deployable model")
        else:
            hint = suggest(name, list(models))
            more = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
            problems.append(f"{where}: unknown model {name!r}{more}")
        return None

    for svc in services.values():
        where = f"{FILES['services']}: service {svc.id!r}"
        for name in svc.models:
            ref(where, name)
        for dup in sorted(set(svc.required_models) & set(svc.optional_models)):
            problems.append(f"{where}: {dup!r} is both required and optional")
        used: set[str] = set()
        seen_ops: set[str] = set()
        for op in svc.operations:
            _check_operation(svc, op, where, models, ref, problems)
            if op.id in seen_ops:
                problems.append(f"{where}: duplicate operation id {op.id!r}")
            seen_ops.add(op.id)
            used.update(op.models)
        for unused in [m for m in svc.models if m not in used]:
            problems.append(f"{where}: model {unused!r} is used by none of its operations")


def _check_operation(
    svc: MidLevelService,
    op: ServiceOperation,
    svc_where: str,
    models: dict[str, SelfHostedModel],
    ref: Any,
    problems: list[str],
) -> None:
    where = f"{svc_where} operation {op.id!r}"
    if op.path != f"/{svc.id}/{op.id}":
        problems.append(f"{where}: path {op.path!r} should be '/{svc.id}/{op.id}'")
    for dup in sorted(set(op.required_models) & set(op.optional_models)):
        problems.append(f"{where}: {dup!r} is both required and optional")
    price_field = UNIT_PRICE_FIELD[op.unit]
    if svc.pricing.price_for(op.unit) is None:
        problems.append(f"{where}: bills per {op.unit} but the service has no {price_field} price")
    for name in op.models:
        if name not in svc.models:
            problems.append(f"{where}: model {name!r} is not listed by the service")
        model = ref(where, name) if name not in svc.models else models.get(name)
        if model is not None and model.pricing.price_for(op.unit) is None:
            problems.append(
                f"{where}: model {name!r} has no {price_field} price "
                f"(the operation bills per {op.unit})"
            )
