"""Errors a user can cause, each rendered as one actionable line (never a traceback).

Everything a user can get wrong (a policy, a path, a key, a server refusal) raises a subclass of
:class:`AlpolicyError`; the CLI prints ``str(error)`` and exits with the error's ``exit_code``.
Anything else escaping is a bug in alpolicy and is allowed to show its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class AlpolicyError(Exception):
    """Base class for user-facing errors: ``str()`` is the complete, one-line message."""

    exit_code: int = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy document, located by its JSON path (``$.image.all[1].min``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PolicyError(AlpolicyError, ValueError):
    """A policy (or SDK ``conditionals`` dict) is invalid; ``problems`` lists every problem found.

    Validation never stops at the first problem: fixing a policy file in one pass beats a
    fix-rerun loop, so all problems are collected and reported together.
    """

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        count = len(self.problems)
        head = f"{where}invalid policy ({count} problem{'s' if count != 1 else ''})"
        super().__init__(head + "".join(f"\n  {p}" for p in self.problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class PluginError(AlpolicyError):
    """A plugin is broken: a duplicate name, an unknown hook, or an invalid registration."""


class UsageError(AlpolicyError):
    """The command line or call arguments are wrong (a missing folder, a bad model spec...)."""


class AuthError(AlpolicyError):
    """A service refused the credentials (401/403): nothing further can succeed, the run stops."""


class ServiceError(AlpolicyError):
    """A remote service failed for a request even after retries (timeouts, 5xx, resets)."""
