"""Errors a user can cause, each rendered as one actionable line (never a traceback).

Everything a user can get wrong (a policy, a path, a key, a server refusal) raises a subclass of
:class:`AlpolicyError`; the CLI prints ``str(error)`` and exits with the error's ``exit_code``.
An exception a plugin's own code raises is a bug in that plugin: it becomes a :class:`PluginCrash`
(one line naming the plugin). Anything else escaping is a bug in alpolicy and is allowed to show
its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

from .io.secrets import redact


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


def exception_line(error: BaseException) -> str:
    """``KeyError: 'bomb'``: an exception from foreign code as one redacted line (its text may hold
    a URL with a key, or a newline)."""
    text = str(error)
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return redact(line).replace("\r", "\\r").replace("\n", "\\n")


class PluginCrash(AlpolicyError):
    """Code a plugin provides (a rule, a backend, a destination) raised an exception its contract
    does not document: a bug in the plugin, reported in one line that names the component, its
    plugin and, for a rule, its JSON path. The pipeline fails that image and goes on (its circuit
    breaker stops a run in which every image crashes); a command prints the line, exit code 2.
    The original exception is the ``__cause__``, for the plugin's author."""

    def __init__(self, component: str, error: BaseException, *, path: str | None = None, verb: str = "raised") -> None:
        self.component = component
        self.path = path
        self.cause = exception_line(error)
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{component} {verb} {self.cause}")


class RuleError(PluginCrash):
    """A rule's ``check`` / ``accepts`` / ``explain`` / ``score`` raised: the rule, its plugin, its place."""

    def __init__(self, rule: str, plugin: str, path: str, error: BaseException) -> None:
        self.rule = rule
        self.plugin = plugin
        super().__init__(rule_component(rule, plugin), error, path=path)


def rule_component(rule: str, plugin: str) -> str:
    """``rule 'explodes' (plugin crashing-rule)``: how messages about a rule's own code name it."""
    return f"rule {rule!r} (plugin {plugin})" if plugin else f"rule {rule!r}"
