"""The custom search attributes operators filter by in the Web UI (DESIGN section 7).

One list, registered by `radiant up` (dev server flags), the test harness and docker-compose.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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
