"""The outcome of a run: counts, per-rule rejections, failures, and the one-screen summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..io.images import SKIPPED_REASONS

#: Failures kept in memory for the summary (all of them are in the journal).
MAX_LISTED_FAILURES = 20


@dataclass
class RunReport:
    run_id: int
    journal: str
    decisions_log: str | None
    dry_run: bool
    status: str = "running"  # completed | interrupted | aborted | failed (an unexpected exception)
    seen: int = 0
    inferred: int = 0
    reused: int = 0
    qualified: int = 0
    sampled: int = 0
    sent: int = 0
    duplicates: int = 0
    already_sent: int = 0
    would_send: int = 0
    pending: int = 0
    failed: int = 0
    retries: int = 0
    #: Images retried in deferred rounds at the end of the stream, and those rounds.
    retried_later: int = 0
    retry_rounds: int = 0
    elapsed: float = 0.0
    rejected_by: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, str]] = field(default_factory=list)
    message: str | None = None
    #: The fingerprint of the model this run inferred with (``None``: no model, stored predictions only).
    fingerprint: str | None = None
    #: Predictions taken from the journal, per fingerprint, and what went into each (for people).
    reused_from: Counter[str] = field(default_factory=Counter)
    reused_settings: dict[str, str] = field(default_factory=dict)
    #: Entries of the source folder left out, per reason (:data:`alpolicy.io.images.SKIPPED_REASONS`).
    skipped: Counter[str] = field(default_factory=Counter)

    def add_reuse(self, fingerprint: str, settings: str) -> None:
        self.reused += 1
        self.reused_from[fingerprint] += 1
        self.reused_settings.setdefault(fingerprint, settings)

    def add_failure(self, path: str, stage: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"path": path, "stage": stage, "error": error})

    @property
    def exit_code(self) -> int:
        """0 done, 1 some images failed or stayed pending, 130 interrupted."""
        if self.status == "interrupted":
            return 130
        return 1 if (self.failed or self.pending or self.status != "completed") else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejected_by"] = dict(self.rejected_by.most_common())
        data["skipped"] = dict(sorted(self.skipped.items()))
        del data["reused_settings"]
        data["reused_from"] = [{"fingerprint": fingerprint, "settings": self.reused_settings.get(fingerprint), "count": count}
                               for fingerprint, count in self.reused_from.most_common()]
        return data

    def summary(self) -> str:
        rate = self.seen / self.elapsed if self.elapsed > 0 else 0.0
        verb = {"completed": "finished", "interrupted": "interrupted", "aborted": "stopped"}.get(self.status, self.status)
        mode = " (dry run: nothing sent)" if self.dry_run else ""
        lines = [f"run {self.run_id} {verb} in {_duration(self.elapsed)}, {rate:.1f} images/s{mode}"]
        if self.message:
            lines.append(f"  {self.message}")
        rows: list[tuple[str, int, str]] = [
            ("seen", self.seen, ""),
            *(("skipped", count, SKIPPED_REASONS.get(reason, reason)) for reason, count in sorted(self.skipped.items())),
            ("inferred", self.inferred, f"{self.reused} predictions reused from the journal" if self.reused else ""),
            ("qualified", self.qualified, ""),
        ]
        if self.sampled != self.qualified:
            rows.append(("sampled", self.sampled, "after the sampling rules"))
        if self.dry_run:
            rows.append(("would send", self.would_send, ""))
        else:
            rows.append(("sent", self.sent, f"{self.duplicates} were already in the destination" if self.duplicates else ""))
        if self.already_sent:
            rows.append(("already sent", self.already_sent, "by earlier runs, skipped"))
        if self.pending:
            rows.append(("pending", self.pending, "destination unavailable: the next run sends them"))
        rows.append(("failed", self.failed, ""))
        width = max(len(name) for name, _, _ in rows)
        for name, value, note in rows:
            lines.append(f"  {name:<{width}}  {value:>7}" + (f"  ({note})" if note else ""))
        lines += self._reused_lines()
        if self.retries:
            lines.append(f"  {self.retries} requests were retried")
        if self.retried_later:
            rounds = f"{self.retry_rounds} round{'s' if self.retry_rounds != 1 else ''}"
            lines.append(f"  {self.retried_later} images were retried at the end of the stream ({rounds})")
        if self.rejected_by:
            lines.append("  rejected by rule:")
            rule_width = max(len(rule) for rule in self.rejected_by)
            for rule, count in self.rejected_by.most_common():
                lines.append(f"    {rule:<{rule_width}}  {count:>7}")
        for failure in self.failures[:5]:
            path = failure["path"].replace("\r", "\\r").replace("\n", "\\n")  # one line per failure
            lines.append(f"  failed: {path}: {failure['error']}")
        if self.failed > 5:
            lines.append(f"  ... {self.failed - 5} more failures in the journal and the decisions log")
        if self.decisions_log:
            lines.append(f"  decisions log: {self.decisions_log}")
        lines.append(f"  journal:       {self.journal}")
        return "\n".join(lines)


    def _reused_lines(self) -> list[str]:
        """Which stored predictions were decided on: the fingerprint says which model, at which settings."""
        named = {fingerprint: f"{fingerprint} ({self.reused_settings.get(fingerprint) or 'settings not recorded'})"
                 for fingerprint in self.reused_from}
        if len(named) == 1:
            return [f"  reused predictions of {next(iter(named.values()))}"]
        if not named:
            return []
        lines = [f"  reused predictions of {len(named)} model fingerprints:"]
        lines += [f"    {count:>7}  {named[fingerprint]}" for fingerprint, count in self.reused_from.most_common()]
        return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
