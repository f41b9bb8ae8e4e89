"""Catalog errors. Messages are written for the person at the terminal or reading an API error."""

from __future__ import annotations

from collections.abc import Sequence


class CatalogError(Exception):
    """Base class: anything the catalog refuses."""


def _did_you_mean(suggestions: Sequence[str]) -> str:
    if not suggestions:
        return ""
    return "; did you mean " + ", ".join(repr(s) for s in suggestions) + "?"


class UnknownModelError(CatalogError, LookupError):
    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        super().__init__(f"unknown model {name!r}{_did_you_mean(self.suggestions)}")


class NotDeployableError(CatalogError):
    """The id is a registry entry: listed, but with no spec to deploy it from."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(
            f"model {model_id!r} is a registry entry without a deployable spec "
            "(no instance, price or thermal data); it cannot be selected or deployed"
        )


class UnknownServiceError(CatalogError, LookupError):
    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        super().__init__(f"unknown service {name!r}{_did_you_mean(self.suggestions)}")


class UnknownOperationError(CatalogError, LookupError):
    def __init__(self, service_id: str, name: str, known: Sequence[str] = ()) -> None:
        self.service_id = service_id
        self.name = name
        self.known = list(known)
        hint = f" (operations: {', '.join(self.known)})" if self.known else ""
        super().__init__(f"unknown operation {name!r} of service {service_id!r}{hint}")


class CatalogValidationError(CatalogError, ValueError):
    """The catalog data is invalid. `problems` lists every problem found, one line each."""

    def __init__(self, problems: Sequence[str], source: str = "catalog") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} is invalid ({len(self.problems)} problem(s)):\n{lines}")
