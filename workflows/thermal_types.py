"""Inputs, results and state of the thermal workflows (pure pydantic, client and worker)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from models_catalog.thermal_policy import TrafficStats
from models_catalog.types import ThermalState

# ApplicationError types (non-retryable where the caller can do nothing by retrying).
ERR_MODEL_OFF = "ModelOff"
ERR_UNKNOWN_MODEL = "UnknownModel"
ERR_NOT_DEPLOYABLE = "ModelNotDeployable"
ERR_WARMUP_FAILED = "WarmupFailed"
ERR_WARMUP_DEADLINE = "WarmupDeadlineExceeded"


def model_off_message(app_id: str, environment: str, model_id: str) -> str:
    """The refusal of a warm-up of an OFF model (the workflow's and the CLI's words)."""
    return (
        f"model {model_id} is OFF in {app_id}/{environment}; an admin must set it to COLD, "
        "WARM, HOT or AUTOMATIC before it can serve"
    )


def thermal_workflow_id(app_id: str, environment: str, model_id: str) -> str:
    return f"thermal/{app_id}/{environment}/{model_id}"


class ThermalTimings(BaseModel):
    """Durations, configurable so tests and demos need no time skipping."""

    idle_seconds: float | None = None  # overrides every model's scaleToZeroAfterMinutes
    poll_seconds: float = 5.0  # InService polling interval
    warmup_deadline_seconds: float | None = None  # default: derived from warmupTimeSeconds
    max_history_events: int | None = None  # continue-as-new earlier than the server suggests
    #: After a failed capacity change of a serving endpoint, or a create SageMaker failed for
    #: want of capacity, try again after this long (doubling per consecutive failure, at most
    #: 32 x); None: 30 s.
    capacity_retry_seconds: float | None = None


class ModelThermalSpec(BaseModel):
    """What the workflow needs to know about one deployable model (from the catalog)."""

    model_id: str
    endpoint_name: str
    image: str
    instance_type: str
    environment: dict[str, str] = Field(default_factory=dict)
    model_data_url: str | None = None
    category: str
    specialty: str
    default_state: ThermalState
    scale_to_zero_after_minutes: int
    warmup_time_seconds: int
    min_instances: int
    max_instances: int
    billed_hourly: Decimal
    async_inference: bool = False  # every operation using it is long-running (DESIGN 4)


class Lease(BaseModel):
    """A caller using the model; keeps it from scaling to zero while its work runs."""

    lease_id: str
    expires_at: datetime


class CapacityBackoff(BaseModel):
    """A failed capacity change waiting for its retry (kept across continue-as-new)."""

    failures: int  # consecutive failures: the next delay doubles
    retry_at: float  # workflow time (epoch seconds) of the next try
    generation: int  # the intent that failed; new intent ends the backoff
    desired: int | None = None  # the instance count that failed
    create: bool = False  # a create that found no capacity (nothing serves meanwhile)


class ThermalSnapshot(BaseModel):
    """Everything the workflow carries across continue-as-new."""

    target_state: ThermalState
    current_state: ThermalState
    instance_count: int = 0
    endpoint_status: str | None = None
    transitioning: bool = False
    last_activity_at: datetime | None = None
    last_error: str | None = None
    leases: list[Lease] = Field(default_factory=list)
    traffic: TrafficStats = Field(default_factory=TrafficStats)  # AUTOMATIC's observed history
    seq: int = 0  # transitions so far: part of the idempotency key of records and notifications
    generation: int = 0  # bumped by each accepted target change
    applied_generation: int = 0
    failed_generation: int = -1  # generation whose transition failed (not retried on its own)
    demand_failed_at: datetime | None = None
    capacity_backoff: CapacityBackoff | None = None  # set only when continuing as new
    refresh: bool = False  # a re-read of the backend still due (set only when continuing as new)
    # A capacity step still owed after a rolled-back update (set only when continuing as new).
    autoscaling_owed: bool = False
    # A recount the last pass did not act on: the next run re-reads the count, or it would wait
    # for the next reconcile (set only when continuing as new).
    recount: bool = False
    # Why the old config serves after a rolled-back update, while the capacity step after it
    # backs off: still shown once the retry succeeds (set only when continuing as new).
    rollback_note: str | None = None
    #: The count SageMaker's autoscaler moved the endpoint to (within the bounds registered),
    #: adopted for this target generation: kept instead of scaled back, its uptime billed.
    autoscaled_count: int | None = None
    autoscaled_generation: int = -1
    #: What the running fleet bills (the spec it was created with): a catalog change of type
    #: or rate reaches the endpoint at its next create, its uptime interval then too. None:
    #: created before these were kept, billed as the current spec.
    billed_instance_type: str | None = None
    billed_hourly: Decimal | None = None
    #: The workflow time of the last record: records are ordered by (time, seq) in Postgres,
    #: so the next one is never stamped earlier, even when the server's clock stepped back
    #: across continue-as-new. None: no record yet, or made before this was kept.
    last_recorded_at: datetime | None = None


class ModelThermalInput(BaseModel):
    app_id: str
    environment: str
    model_id: str
    timings: ThermalTimings = Field(default_factory=ThermalTimings)
    snapshot: ThermalSnapshot | None = None  # set by continue-as-new


class SetTargetRequest(BaseModel):
    state: ThermalState
    reason: str = "admin"


class WarmUpRequest(BaseModel):
    """A caller wants the model ready; returns when it is InService or the deadline passes."""

    requester: str = "cli"
    deadline_seconds: float | None = None
    lease_id: str | None = None  # hold the model warm until `release` (or the lease expires)
    lease_seconds: float = 3600.0
    verify_endpoint: bool = False  # re-read the backend first (the caller saw it missing)


class ReleaseRequest(BaseModel):
    lease_id: str


class ThermalStatus(BaseModel):
    app_id: str
    environment: str
    model_id: str
    endpoint_name: str
    target_state: ThermalState
    current_state: ThermalState
    instance_count: int
    endpoint_status: str | None
    transitioning: bool
    ready: bool
    in_flight: int
    last_activity_at: datetime | None
    last_error: str | None
    transitions: int
    idle_deadline: datetime | None = None  # COLD with instances: when it scales to zero if idle
