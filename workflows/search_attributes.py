"""The custom search attributes operators filter by in the Web UI (DESIGN section 7).

One list, registered by `radiant up` (dev server flags), the test harness and docker-compose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

if TYPE_CHECKING:
    from workflows.service_types import ServiceRequest

TENANT = SearchAttributeKey.for_keyword("RadiantTenant")
APP = SearchAttributeKey.for_keyword("RadiantApp")
ENVIRONMENT = SearchAttributeKey.for_keyword("RadiantEnvironment")
SERVICE = SearchAttributeKey.for_keyword("RadiantService")
OPERATION = SearchAttributeKey.for_keyword("RadiantOperation")
MODEL = SearchAttributeKey.for_keyword("RadiantModel")
THERMAL_STATE = SearchAttributeKey.for_keyword("RadiantThermalState")

ALL_SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [
    TENANT,
    APP,
    ENVIRONMENT,
    SERVICE,
    OPERATION,
    MODEL,
    THERMAL_STATE,
]


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Keyword` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL_SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


def job_search_attributes(req: ServiceRequest) -> TypedSearchAttributes:
    """What a service job is filtered by, known before it runs. Clients set them at start (no
    extra history event or visibility write); the workflow upserts any a client left out."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(TENANT, req.tenant),
            SearchAttributePair(APP, req.app_id),
            SearchAttributePair(ENVIRONMENT, req.environment),
            SearchAttributePair(SERVICE, req.service),
            SearchAttributePair(OPERATION, req.operation),
        ]
    )
