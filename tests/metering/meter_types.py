"""Input of the test workflow (its own module: the workflow module imports it passed through)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import BaseModel

from models_catalog.pricing import ModelCost


class MeterInput(BaseModel):
    """A finished service call to record: the charge and the models' costs."""

    tenant_id: uuid.UUID
    app_id: str = "meter-test"
    environment: str = "dev"
    service_id: str
    operation_id: str
    unit: str
    units: Decimal
    unit_price: Decimal
    billed_amount: Decimal
    model_costs: list[ModelCost]
