"""Service state and model availability (DESIGN 5), as pure functions over the catalog and the
recorded thermal states, shared by the job planner and `radiant services status`.

- A model is *available* unless it is OFF, failed, or not deployable (COLD is available on
  demand: a request warms it and is held meanwhile).
- *Failed* is bounded in time: a model whose last recorded transition failed (an error and no
  instance) is unavailable for FAILED_COOLDOWN after that failure was recorded (the row's
  `updated_at`), then available on demand again, whatever its target state (except OFF): the
  next job's warm-up is the new intent that makes its thermal workflow try again, and that job
  reports WarmupFailed itself if it fails again (and records a new failure, a new cool-down).
  Without the bound, one failed warm-up would refuse every later job before it could ask.
- Service state: DISABLED if an admin disabled it; else OFFLINE if a required model is
  unavailable; else DEGRADED if an optional model is unavailable; else RUNNING.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models_catalog.catalog import Catalog
from models_catalog.errors import CatalogError
from models_catalog.types import MidLevelService, ServiceState, ThermalState


@dataclass(frozen=True)
class ModelThermalRow:
    """What Postgres records of one model in one (app, environment)."""

    target_state: ThermalState
    instance_count: int = 0
    last_error: str | None = None
    current_state: ThermalState | None = None
    transitioning: bool = False
    # The database's clock: when the row was last recorded, and when it was read. A failure's
    # age is their difference unless the caller passes its own `now` (one clock either way).
    updated_at: datetime | None = None
    read_at: datetime | None = None

    @property
    def warm_and_settled(self) -> bool:
        """WARM/HOT, applied and running: idleness never scales it in, so a job can use it
        without holding it (no lease, no round trip through its thermal workflow)."""
        return (
            self.target_state in (ThermalState.WARM, ThermalState.HOT)
            and self.current_state == self.target_state
            and self.instance_count > 0
            and not self.transitioning
        )


#: How long a failed transition keeps a model unavailable (see the module docstring).
FAILED_COOLDOWN = timedelta(minutes=5)


def failure_problem(
    row: ModelThermalRow, now: datetime | None = None, cooldown: timedelta | None = None
) -> str | None:
    """Why the recorded failure still makes the model unavailable, or None: no failure (no
    error, or instances running), or one recorded at least `cooldown` (default
    FAILED_COOLDOWN) before `now` (default: `row.read_at`). A failure of unknown age (no
    timestamps) counts as recent. Pure: the time is an argument."""
    if not row.last_error or row.instance_count > 0:
        return None
    cooldown = FAILED_COOLDOWN if cooldown is None else cooldown
    now = now if now is not None else row.read_at
    if row.updated_at is None or now is None:
        return f"failed: {row.last_error}"
    age = now - row.updated_at
    if age >= cooldown:
        return None
    left = max(0, math.ceil((cooldown - age).total_seconds()))
    return (
        f"failed: {row.last_error} (a job may try it again in {left}s, once "
        f"{_span(cooldown)} have passed since the failure)"
    )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds}s"


@dataclass(frozen=True)
class ServiceStatus:
    service_id: str
    state: ServiceState
    reason: str
    unavailable_models: list[str] = field(default_factory=list)


def model_availability(
    catalog: Catalog,
    model_id: str,
    thermal: dict[str, ModelThermalRow],
    now: datetime | None = None,
    *,
    cooldown: timedelta | None = None,
) -> tuple[bool, str]:
    """(available, reason). Models with no recorded row use their catalog default state. A
    failed model is unavailable only within the cool-down after its failure (`failure_problem`;
    `now` defaults to when the row was read)."""
    try:
        model = catalog.model(model_id)
    except CatalogError as exc:
        return False, str(exc)
    row = thermal.get(model.id)
    target = row.target_state if row else model.thermal.default_state
    if target == ThermalState.OFF:
        return False, f"{model.id} is OFF"
    if row and (problem := failure_problem(row, now, cooldown)) is not None:
        return False, f"{model.id} {problem}"
    return True, ""


def service_status(
    catalog: Catalog,
    service: MidLevelService,
    thermal: dict[str, ModelThermalRow],
    admin_disabled: bool,
    now: datetime | None = None,
    *,
    cooldown: timedelta | None = None,
) -> ServiceStatus:
    """DISABLED, OFFLINE, DEGRADED or RUNNING (module docstring); `now` and `cooldown` as for
    `model_availability`."""
    if admin_disabled:
        # A service the catalog ships DISABLED waits for an admin, whoever last set the flag
        # (a refresh stores the default as the flag); only disabling one the catalog ships
        # enabled is an admin's doing.
        reason = (
            "disabled until an admin enables it (the catalog's default)"
            if service.default_state == ServiceState.DISABLED
            else "disabled by an admin"
        )
        return ServiceStatus(service.id, ServiceState.DISABLED, reason)
    # OFFLINE follows the service's own required models; a model only some operations need
    # (or an optional one) degrades the service, and those operations reject on their own.
    others = [m for op in service.operations for m in op.models] + service.optional_models
    others = [m for m in dict.fromkeys(others) if m not in service.required_models]

    def check(m: str) -> tuple[bool, str]:
        return model_availability(catalog, m, thermal, now, cooldown=cooldown)

    checks = {m: check(m) for m in service.required_models}
    missing = {m: why for m, (ok, why) in checks.items() if not ok}
    if missing:
        return ServiceStatus(
            service.id, ServiceState.OFFLINE,
            "required model unavailable: " + "; ".join(missing.values()), list(missing),
        )  # fmt: skip
    degraded = [m for m in others if not check(m)[0]]
    if degraded:
        return ServiceStatus(
            service.id, ServiceState.DEGRADED,
            "model(s) unavailable: " + ", ".join(degraded), degraded,
        )  # fmt: skip
    return ServiceStatus(service.id, ServiceState.RUNNING, "all models available")


def uses_async_inference(catalog: Catalog, model_id: str) -> bool:
    """A model is hosted on an asynchronous inference endpoint when every operation that uses
    it is long-running (protein folding, 3D reconstruction, long transcription, ...); its jobs
    then submit and poll instead of holding a connection open."""
    uses = [op for _, op in catalog.operations() if model_id in op.models]
    return bool(uses) and all(op.long_running for op in uses)
