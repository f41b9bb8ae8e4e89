"""Effective configuration: environment variables with the ``RADIANT_`` prefix (or a .env file).

Every process (CLI, worker, `radiant up`) reads the same settings, so a worker pointed at a real
Temporal cluster, a real PostgreSQL and real AWS needs only environment variables.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workers.samples import SAMPLES_DIR

if TYPE_CHECKING:
    from activities.app_scope import AppScope
    from workflows.thermal_types import ThermalTimings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RADIANT_", env_file=".env", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "radiant"
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)

    # PostgreSQL. Unset: an embedded PostgreSQL 16 (pgserver) in `data_dir/postgres`.
    # `database_url` is the owner (migrations, catalog sync); the worker connects as the
    # non-owner application role, by `app_database_url` or, if unset, the same server with
    # user `app_db_user`.
    database_url: SecretStr | None = None
    app_database_url: SecretStr | None = None
    app_db_user: str = "radiant_app"
    app_db_password: SecretStr = SecretStr("radiant_app")

    # Model hosting backend: `local` is the embedded stand-in for SageMaker hosting.
    backend: Literal["local", "sagemaker"] = "local"
    aws_region: str = "us-east-1"
    sagemaker_execution_role_arn: str | None = None
    sagemaker_image_registry: str = "763104351884.dkr.ecr.{region}.amazonaws.com"
    async_output_s3_uri: str | None = None

    # Defaults for commands that act on one (app, environment).
    app_id: str = "radiant"
    environment: str = "dev"
    # The (app, environment) pairs served (activities/app_scope.py): comma-separated or a JSON
    # list of app/environment patterns; `*` (default) serves any. Production lists its pairs.
    apps: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    # Thermal timing. Production keeps the catalog's minutes; tests and demos shorten them.
    # Idle seconds before scale to zero: overrides every model's scaleToZeroAfterMinutes.
    thermal_idle_seconds: float | None = Field(default=None, gt=0)
    # How often a warm-up polls for InService.
    thermal_poll_seconds: float = Field(default=2.0, gt=0)
    # The seed's check runs every 5 minutes; we run every 1.
    reconcile_interval_seconds: int = Field(default=60, ge=1)
    # How often a long job polls its async inference result.
    job_poll_seconds: float = Field(default=5.0, gt=0)
    input_spool_s3_uri: str | None = None  # where small inline inputs go on the sagemaker backend

    # Where tenants' inputs may come from (activities/inputs/policy.py); comma-separated or a
    # JSON list. Local paths only under `input_roots` (default: the bundled samples; empty: no
    # local paths), never inside `data_dir`. S3 URIs only under `input_s3_prefixes`, `{tenant}`
    # standing for the tenant's name (s3://bucket/inputs/{tenant}/); empty: no restriction.
    input_roots: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [SAMPLES_DIR])
    input_s3_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=list)

    data_dir: Path = Field(default=Path(".radiant"))
    catalog_dir: Path | None = None  # override the bundled catalog data (YAML)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        # host:port, an IPv6 host in brackets ([::1]:7233); no scheme, no path, no spaces.
        host, _, port = v.rpartition(":")
        bare_host = unbracketed(host)
        if (
            not bare_host
            or not port.isascii()
            or not port.isdigit()
            or not 1 <= int(port) <= 65535
            or any(c.isspace() or c in "/[]@" for c in bare_host)
            or (":" in bare_host and bare_host == host)  # unbracketed IPv6 or a scheme
        ):
            raise ValueError("expected host:port with a port from 1 to 65535 (e.g. localhost:7233)")
        return v

    @field_validator("input_roots", "input_s3_prefixes", "apps", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if v.strip().startswith("["):
            return json.loads(v)
        return [item.strip() for item in v.split(",") if item.strip()]

    @field_validator("input_roots")
    @classmethod
    def _absolute_roots(cls, v: list[Path]) -> list[Path]:
        roots = [p.expanduser().resolve() for p in v]
        if any(r == Path(r.anchor) for r in roots):
            raise ValueError("an input root may not be / (tenants could read any file)")
        return roots

    @field_validator("input_s3_prefixes")
    @classmethod
    def _s3_prefixes(cls, v: list[str]) -> list[str]:
        for prefix in v:
            if not prefix.startswith("s3://") or len(prefix) <= len("s3://"):
                raise ValueError(f"input S3 prefix {prefix!r} is not an s3://bucket/... URI")
        return v

    @field_validator("app_id", "environment")
    @classmethod
    def _pair_id(cls, v: str, info: ValidationInfo) -> str:
        from activities.app_scope import id_problem

        label = "app" if info.field_name == "app_id" else "environment"
        if problem := id_problem(label, v):
            raise ValueError(problem)  # `/` would make its workflow ids another pair's
        return v

    @field_validator("apps")
    @classmethod
    def _apps(cls, v: list[str]) -> list[str]:
        from activities.app_scope import AppScope

        return list(AppScope.parse(v).patterns)  # ValueError names a malformed pattern

    def app_scope(self) -> AppScope:
        from activities.app_scope import AppScope

        return AppScope(tuple(self.apps))

    def thermal_timings(self) -> ThermalTimings:
        """The durations every client of the thermal workflows passes when it starts one."""
        from workflows.thermal_types import ThermalTimings

        return ThermalTimings(
            idle_seconds=self.thermal_idle_seconds, poll_seconds=self.thermal_poll_seconds
        )

    def masked(self) -> dict[str, Any]:
        """Settings as plain values with secrets and URL passwords masked (for `radiant config`)."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = _mask_url(value.get_secret_value()) if "url" in name else "**********"
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, list):
                out[name] = [str(v) if isinstance(v, Path) else v for v in value]
            else:
                out[name] = value
        return out


def unbracketed(host: str) -> str:
    """A host as sockets and resolvers take it: an IPv6 literal without the brackets an address
    puts around it (`[::1]` of `[::1]:7233` is `::1`), any other host as it is."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: mask entirely rather than leak it
        return "**********"


class SettingsError(ValueError):
    """RADIANT_* variables (or .env) that do not validate; the message names each variable."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError(settings_problems(err)) from None


def settings_problems(err: ValidationError) -> str:
    """One line: each bad variable, what is wrong, and the value given."""
    problems = []
    for e in err.errors():
        name = f"RADIANT_{str(e['loc'][0]).upper()}" if e["loc"] else "settings"
        given = f" (got {e['input']!r})" if isinstance(e.get("input"), str | int | float) else ""
        problems.append(f"{name}: {e['msg'].removeprefix('Value error, ')}{given}")
    return "invalid settings: " + "; ".join(problems)
