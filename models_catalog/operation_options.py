"""A job's `options` checked against its operation's documented options (catalog
`ServiceOperation.options`), so that a typo or a wrong type is refused by the plan, before a
model warms up, instead of failing in the model server after the cost.

Pure: the plan activity calls `option_problem` and `optional_model_problem` and turns a message
into a non-retryable error; the job client calls the same functions to refuse a bad request
before it starts a workflow.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from models_catalog.catalog import Catalog
from models_catalog.errors import CatalogError
from models_catalog.types import OperationOption, ServiceOperation

#: Band names a `bands` option may use (Harmonized Landsat Sentinel-2 order), and the ones every
#: geospatial model needs (water and vegetation indices).
BAND_NAMES = ("blue", "green", "red", "nir", "swir1", "swir2")
REQUIRED_BANDS = ("green", "red", "nir")


def option_problem(service_id: str, op: ServiceOperation, options: dict[str, Any]) -> str | None:
    """None when every key is documented and well-typed; else one message naming the first
    problem (the key, what it must be, what it got)."""
    label = f"{service_id}/{op.id}"
    for key, value in options.items():
        spec = op.options.get(key)
        if spec is None:
            known = ", ".join(sorted(op.options)) or "none"
            return f"{label} has no option {key!r} (its options: {known})"
        if (why := _value_problem(spec, value)) is not None:
            return f"options.{key} of {label} {why}, got {_shown(value)}"
    return None


def optional_model_problem(
    catalog: Catalog, service_id: str, op: ServiceOperation, name: str
) -> str | None:
    """None when `name` (an id or alias) is a deployable model and one of `op`'s optional
    models; else one message (the catalog's for an unknown or registry-only model)."""
    try:
        model = catalog.model(name)
    except CatalogError as exc:
        return str(exc)
    if model.id not in op.optional_models:
        return (
            f"{model.id} is not an option of {service_id}/{op.id}; options: "
            f"{', '.join(op.optional_models) or 'none'}"
        )
    return None


def optional_models_choice(
    catalog: Catalog, service_id: str, op: ServiceOperation, names: list[str]
) -> tuple[list[str], str | None]:
    """The optional models `names` asks for, as canonical ids, each once, in the order named;
    and None, or one message refusing the list:

    - more names than `op` has optional models (naming one twice or by two aliases is
      harmless: it runs once; a longer list is a mistake, not a choice);
    - a name `optional_model_problem` refuses;
    - two models that would replace the same required model (the plan replaces the required
      model of an optional model's specialty; two of them would silently keep the last one).
    """
    label = f"{service_id}/{op.id}"
    if len(names) > len(op.optional_models):
        return [], (
            f"{len(names)} optional models named; {label} has {len(op.optional_models)}: "
            f"{', '.join(op.optional_models) or 'none'}"
        )
    chosen: list[str] = []
    for name in names:
        if (problem := optional_model_problem(catalog, service_id, op, name)) is not None:
            return [], problem
        model_id = catalog.model(name).id
        if model_id not in chosen:
            chosen.append(model_id)
    replacing: dict[str, str] = {}  # required model -> the optional model replacing it
    for model_id in chosen:
        specialty = catalog.model(model_id).specialty
        required = next(
            (r for r in op.required_models if catalog.model(r).specialty == specialty), None
        )
        if required is None:
            continue  # an extra step: runs beside the required models
        if (other := replacing.setdefault(required, model_id)) != model_id:
            return [], (
                f"optional models {other} and {model_id} of {label} are both "
                f"{specialty.value} models: each would replace {required}; name one of them"
            )
    return chosen, None


def _value_problem(spec: OperationOption, value: Any) -> str | None:
    match spec.type:
        case "number" | "integer":
            return _number_problem(spec, value)
        case "box":
            if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
                return "must be [x1, y1, x2, y2] in pixels"
            x1, y1, x2, y2 = value
            if min(value) < 0 or x2 <= x1 or y2 <= y1:
                return "must be [x1, y1, x2, y2] with 0 <= x1 < x2 and 0 <= y1 < y2"
            return None
        case "bands":
            names = ", ".join(BAND_NAMES)
            if not (isinstance(value, list) and value and all(isinstance(b, str) for b in value)):
                return f"must be a list of band names ({names})"
            if unknown := [b for b in value if b not in BAND_NAMES]:
                return f"names unknown band(s) {', '.join(map(str, unknown))} (known: {names})"
            if len(set(value)) != len(value):
                return "names a band twice"
            if missing := [b for b in REQUIRED_BANDS if b not in value]:
                return f"must include {', '.join(missing)} (the models need green, red and nir)"
            return None
        case "location":
            return None if isinstance(value, str) and value.strip() else "must be a path or URI"
    raise AssertionError(spec.type)  # the catalog validates the type names


def _is_number(value: Any) -> bool:
    """An int (any size: compared exactly, never converted to float) or a finite float.
    JSON true/false decode to bool, a subclass of int: not a number here."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _shown(value: Any, limit: int = 100) -> str:
    """`value` for a message: repr, shortened (an int of thousands of digits has no repr:
    Python refuses to convert it to a string, ValueError)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _number_problem(spec: OperationOption, value: Any) -> str | None:
    if spec.type == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        kind = "an integer"
    elif not _is_number(value):
        kind = "a number"
    else:
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if low <= value <= high:
            return None
        kind = "a number" if spec.type == "number" else "an integer"
    bounds = [
        f">= {spec.minimum:g}" if spec.minimum is not None else "",
        f"<= {spec.maximum:g}" if spec.maximum is not None else "",
    ]
    where = " and ".join(b for b in bounds if b)
    return f"must be {kind}" + (f" {where}" if where else "")
