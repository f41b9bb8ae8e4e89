"""Which (app, environment) pairs this deployment serves (`RADIANT_APPS`).

Every caller names its app and environment, and a self-hosted model's thermal workflow, with
its GPU endpoint, is per (app, environment, model). Without a scope, a request naming an
invented app would start endpoints nobody meant to pay for. Production lists its pairs
(`radiant/prod,radiant/staging`); the default `*` serves any pair (development, tests).
Patterns are shell-style (`fnmatch`): `radiant/*` is every environment of app radiant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from temporalio.exceptions import ApplicationError

ERR_APP_NOT_SERVED = "AppNotServed"
ANY = "*"


class AppNotServedError(ApplicationError):
    """An (app, environment) outside `RADIANT_APPS`; the message says what is served.
    Non-retryable wherever it is raised (a plan, a hold, a warm-up started by any activity)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=ERR_APP_NOT_SERVED, non_retryable=True)


@dataclass(frozen=True)
class AppScope:
    patterns: tuple[str, ...] = (ANY,)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AppScope:
        patterns = tuple(e.strip() for e in entries if e.strip())
        for p in patterns:
            app, sep, env = p.partition("/")
            if p != ANY and not (sep and app and env and "/" not in env):
                raise ValueError(f"app pattern {p!r} is not app/environment (or {ANY})")
        if not patterns:
            raise ValueError(f"no app is served: give app/environment patterns, or {ANY}")
        return cls(patterns)

    def allows(self, app_id: str, environment: str) -> bool:
        pair = f"{app_id}/{environment}"
        return any(p == ANY or fnmatchcase(pair, p) for p in self.patterns)

    def problem(self, app_id: str, environment: str) -> str | None:
        if self.allows(app_id, environment):
            return None
        return (
            f"{app_id}/{environment} is not served by this deployment (RADIANT_APPS: "
            f"{', '.join(self.patterns)})"
        )

    def check(self, app_id: str, environment: str) -> None:
        if problem := self.problem(app_id, environment):
            raise AppNotServedError(problem)
