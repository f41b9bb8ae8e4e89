"""Which (app, environment) pairs this deployment serves (`RADIANT_APPS`).

Every caller names its app and environment, and a self-hosted model's thermal workflow, with
its GPU endpoint, is per (app, environment, model). Without a scope, a request naming an
invented app would start endpoints nobody meant to pay for. Production lists its pairs
(`radiant/prod,radiant/staging`); the default `*` serves any pair (development, tests).
Patterns are shell-style (`fnmatch`): `radiant/*` is every environment of app radiant.

App and environment ids are also checked here, once for every entry point: they are joined
with `/` into workflow ids (`thermal/{app}/{env}/{model}`), so an id holding a `/` would name
another pair's workflow (app `acme/eu` in env `prod` is app `acme` in env `eu/prod`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from temporalio.exceptions import ApplicationError

ERR_APP_NOT_SERVED = "AppNotServed"
ERR_INVALID_APP_ID = "InvalidAppId"
ANY = "*"
# What an app or environment id may be: no `/` (the workflow ids' separator), no spaces, no
# glob characters; what the defaults (`radiant`, `dev`) and the endpoint names already fit.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
ID_RULE = "1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit"


class AppNotServedError(ApplicationError):
    """An (app, environment) outside `RADIANT_APPS`; the message says what is served.
    Non-retryable wherever it is raised (a plan, a hold, a warm-up started by any activity)."""

    def __init__(self, message: str, type: str = ERR_APP_NOT_SERVED) -> None:
        super().__init__(message, type=type, non_retryable=True)


class InvalidAppIdError(AppNotServedError):
    """An app or environment id outside ID_PATTERN (no deployment serves it); non-retryable,
    type InvalidAppId."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=ERR_INVALID_APP_ID)


def id_problem(label: str, value: str) -> str | None:
    """Why `value` is no valid app or environment id (`label` names which), or None."""
    if ID_PATTERN.fullmatch(value):
        return None
    return f"{label} {value!r} is not a valid id: use {ID_RULE}"


def pair_problem(app_id: str, environment: str) -> str | None:
    return id_problem("app", app_id) or id_problem("environment", environment)


def check_pair(app_id: str, environment: str) -> None:
    """Refuse app and environment ids that would not name their own workflows."""
    if problem := pair_problem(app_id, environment):
        raise InvalidAppIdError(problem)


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
        if pair_problem(app_id, environment):
            return False  # `*` serves any valid pair, never ids that alias another pair
        pair = f"{app_id}/{environment}"
        return any(p == ANY or fnmatchcase(pair, p) for p in self.patterns)

    def problem(self, app_id: str, environment: str) -> str | None:
        if problem := pair_problem(app_id, environment):
            return problem
        if self.allows(app_id, environment):
            return None
        return (
            f"{app_id}/{environment} is not served by this deployment (RADIANT_APPS: "
            f"{', '.join(self.patterns)})"
        )

    def check(self, app_id: str, environment: str) -> None:
        """InvalidAppIdError for a malformed id, AppNotServedError for a pair not served."""
        check_pair(app_id, environment)
        if problem := self.problem(app_id, environment):
            raise AppNotServedError(problem)
