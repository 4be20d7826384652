"""Gate results as values: what was expected, what was found, the evidence, and the remedy.

A gate never returns a bare bool. Its result is recorded in the ledger, rendered by the CLI,
and, when fatal, raised as one ``GateFailed`` carrying the whole result.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gangway.errors import GangwayError


class Strength(StrEnum):
    """How strong a piece of evidence is, weakest first (BRIEF: surface → ground truth)."""

    SURFACE = "surface"
    CONTENT = "content"
    OBSERVABILITY = "observability"
    GROUND_TRUTH = "ground-truth"


class Status(StrEnum):
    """A gate's outcome; SKIPPED is explicit so a skipped step never reads as a pass."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Check(BaseModel):
    """One assertion a gate made, with what it saw."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    expected: str
    found: str
    remedy: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


class GateResult(BaseModel):
    """The outcome of one gate: its checks, the boundary it guards and its evidence strength."""

    model_config = ConfigDict(frozen=True)

    gate: str
    boundary: str
    strength: Strength
    checks: tuple[Check, ...] = ()
    skipped_reason: str = ""
    duration_s: float = 0.0

    @property
    def status(self) -> Status:
        """Passed only when there is at least one check and every check holds."""
        if self.skipped_reason:
            return Status.SKIPPED
        return Status.PASSED if self.checks and all(c.ok for c in self.checks) else Status.FAILED

    @property
    def failures(self) -> tuple[Check, ...]:
        """The checks that did not hold."""
        return tuple(c for c in self.checks if not c.ok)

    def raise_if_failed(self) -> GateResult:
        """Return self when passed; raise GateFailed otherwise (a skip is not a pass)."""
        if self.status is not Status.PASSED:
            raise GateFailed(self)
        return self

    @classmethod
    def combine(
        cls, gate: str, boundary: str, strength: Strength, parts: list[GateResult]
    ) -> GateResult:
        """One result from several (per function or per case); check names keep their origin."""
        checks = tuple(
            c.model_copy(update={"name": f"{p.gate}: {c.name}"}) for p in parts for c in p.checks
        )
        skipped = [p for p in parts if p.status is Status.SKIPPED]
        reason = "; ".join(f"{p.gate}: {p.skipped_reason}" for p in skipped) if not checks else ""
        return cls(
            gate=gate,
            boundary=boundary,
            strength=strength,
            checks=checks,
            skipped_reason=reason or ("nothing to check" if not parts else ""),
            duration_s=sum(p.duration_s for p in parts),
        )

    def summary(self) -> str:
        """One line: gate, status, and the first failures."""
        if self.status is Status.SKIPPED:
            return f"{self.gate}: skipped ({self.skipped_reason})"
        if self.status is Status.PASSED:
            return f"{self.gate}: passed ({len(self.checks)} checks, {self.strength})"
        names = ", ".join(c.name for c in self.failures[:5])
        more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        return f"{self.gate}: FAILED {names}{more}"


class GateFailed(GangwayError):
    """A gate did not pass; carries the whole result so callers can record and render it."""

    def __init__(self, result: GateResult) -> None:
        self.result = result
        self.boundary = result.boundary
        if result.status is Status.SKIPPED:
            super().__init__(
                f"gate '{result.gate}' was skipped and cannot count as passed",
                expected="the gate to run",
                found=f"skipped: {result.skipped_reason}",
                remedy="run the upstream step it depends on",
            )
            return
        lines = [f"{c.name}: expected {c.expected}; found {c.found}" for c in result.failures]
        remedies = sorted({c.remedy for c in result.failures if c.remedy})
        super().__init__(
            f"gate '{result.gate}' failed ({len(result.failures)} of {len(result.checks)} checks)",
            expected="; ".join(c.expected for c in result.failures[:3]),
            found="\n            ".join(lines),
            remedy=" ".join(remedies),
        )
