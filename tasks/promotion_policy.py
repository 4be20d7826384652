"""Promotion policy: may this image go from one environment to the next? Decided before
anything moves, on values read beforehand (pure: no I/O here).

Each rule is one Check (expected / found / remedy); the first failing one refuses the
promotion (ConfigError, recorded as a ``refused`` attempt by flows/promote.py). The rules:
the declared path (``promotion.from_envs`` of the target, unless skipped with a reason), a
succeeded clean deploy or promotion of the image in the source environment (exactly one
validated digest for the SHA, or the one named), the target's soak time since that record
ended, and the target's schema after its pending migrations carrying every column the
image's code writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gangway.config import PromotionSpec
from gangway.errors import ConfigError
from gangway.evidence import Check, GateResult, Strength
from gangway.record import DeployRecord, Outcome

GATE = "promotion policy"
# Records that prove an image in an environment: it was built and gated there, or it was
# promoted there and gated again (a rollback only moves aliases back).
PROVING_KINDS = ("deploy", "promote")


@dataclass(frozen=True)
class SourceRecord:
    """What the policy needs of one ledger record in the source environment."""

    deploy_id: str
    kind: str
    commit_sha: str
    digest: str
    outcome: str
    dirty: bool
    finished_at: datetime | None
    failed_gates: tuple[str, ...] = ()
    schema_after: str | None = None

    @classmethod
    def of(cls, record: DeployRecord) -> SourceRecord:
        """The policy's view of a ledger record."""
        return cls(
            deploy_id=record.deploy_id,
            kind=record.kind,
            commit_sha=record.commit_sha,
            digest=record.image_digest or "",
            outcome=str(record.outcome),
            dirty=record.dirty,
            finished_at=record.finished_at,
            failed_gates=tuple(g.gate for g in record.gates if g.status.value == "failed"),
            schema_after=record.schema_after,
        )

    @property
    def validated(self) -> bool:
        """A succeeded, clean deploy or promotion whose every gate passed, with a digest."""
        return (
            self.kind in PROVING_KINDS
            and self.outcome == Outcome.SUCCEEDED.value
            and not self.dirty
            and bool(self.digest)
            and not self.failed_gates
        )

    def describe(self) -> str:
        """One line for an error: which record, and what it was."""
        why = []
        if self.dirty:
            why.append("dirty tree")
        if self.failed_gates:
            why.append("failed " + ", ".join(self.failed_gates))
        return (
            f"{self.kind} {self.deploy_id[:12]} {self.outcome}"
            + (f" ({'; '.join(why)})" if why else "")
            + (f" {self.digest[:19]}…" if self.digest else "")
        )


@dataclass(frozen=True)
class PromotionFacts:
    """Everything read from the ledger and the configuration before deciding."""

    service: str
    sha: str | None
    digest: str | None
    source_env: str
    target_env: str
    target: PromotionSpec
    # The service's records in the source environment for the SHA (or the digest), newest first.
    records: tuple[SourceRecord, ...]
    now: datetime
    skip_path_reason: str | None = None
    # Where the SHA is recorded elsewhere (for a clearer refusal): "staging: succeeded".
    elsewhere: tuple[str, ...] = ()


@dataclass(frozen=True)
class SchemaFacts:
    """The target's schema as read before deciding; ``declared`` False: no database."""

    declared: bool
    required_revision: str | None = None  # the schema revision the source deploy recorded
    chain: tuple[str, ...] = ()  # the image's migration revisions, oldest first
    current: str | None = None
    pending: tuple[str, ...] = ()
    # table -> columns the pending revisions add (the target has them once they are applied)
    after_pending: dict[str, set[str]] = field(default_factory=dict)
    # the columns the source deploy's verify-columns gate recorded, checked against the live
    # target (tasks/schema_requirement.check_requirement); None: none recorded
    live: GateResult | None = None
    unreadable: str = ""  # the target's schema could not be planned (why)


@dataclass(frozen=True)
class Verdict:
    """The policy's answer when it allows the promotion: the source record, and why."""

    source: SourceRecord
    checks: tuple[Check, ...]

    def result(self) -> GateResult:
        """The checks as gate evidence for the record."""
        return GateResult(gate=GATE, boundary="config", strength=Strength.CONTENT,
                          checks=self.checks)


class PromotionRefused(ConfigError):
    """A promotion the policy refuses before anything moves; carries the failing check."""

    def __init__(self, check: Check, message: str) -> None:
        self.check = check
        super().__init__(message, expected=check.expected, found=check.found, remedy=check.remedy)


def _refuse(check: Check, message: str) -> PromotionRefused:
    return PromotionRefused(check, message)


def check_path(facts: PromotionFacts) -> Check:
    """The declared path: the target may be promoted from the source, or the path is skipped
    with a reason (kept on the record)."""
    allowed = facts.target.from_envs
    expected = (
        f"{facts.target_env} promoted from one of: {', '.join(allowed)} "
        f"(promotion.from_envs in {facts.target_env}.toml)"
        if allowed
        else f"{facts.target_env} declares no path (promotion.from_envs empty: any source)"
    )
    if facts.source_env == facts.target_env:
        check = Check(name="path", ok=False, expected="a source environment other than the target",
                      found=f"--from {facts.source_env} --to {facts.target_env}",
                      remedy="name the environment that validated the image with --from")
        raise _refuse(check, f"cannot promote {facts.target_env} onto itself")
    if not allowed or facts.source_env in allowed:
        return Check(name="path", ok=True, expected=expected,
                     found=f"{facts.source_env} → {facts.target_env}")
    if facts.skip_path_reason and facts.skip_path_reason.strip():
        return Check(name="path", ok=True, expected=expected,
                     found=f"{facts.source_env} → {facts.target_env}: path skipped "
                     f"(--skip-path, reason: {facts.skip_path_reason.strip()})")
    check = Check(
        name="path", ok=False, expected=expected,
        found=f"--from {facts.source_env}",
        remedy=f"promote through {' or '.join(allowed)} first, or pass --skip-path with "
        "--reason-for-skip \"why\" (recorded)",
    )
    raise _refuse(check, f"{facts.source_env} → {facts.target_env} is not the declared path")


def choose_source(facts: PromotionFacts) -> tuple[SourceRecord, Check]:
    """The one validated record in the source environment the promotion carries on from."""
    what = f"commit {facts.sha[:12]}" if facts.sha else f"digest {facts.digest}"
    valid = [r for r in facts.records if r.validated]
    if facts.digest:
        named = [r for r in valid if r.digest == facts.digest]
        if facts.sha and not named and valid:
            check = Check(
                name="validated digest", ok=False,
                expected=f"{facts.digest} validated in {facts.source_env} for {what}",
                found="validated there: " + ", ".join(sorted({r.digest for r in valid})),
                remedy="name one of those digests with --digest, or omit --digest",
            )
            raise _refuse(check, f"{facts.digest} is not a validated digest of {what}")
        valid = named
    digests = sorted({r.digest for r in valid})
    expected = (
        f"a succeeded, clean deploy or promotion of {facts.service} in {facts.source_env} "
        f"with {what}, every gate passed"
    )
    if not valid:
        seen = [r.describe() for r in facts.records[:5]]
        found = (f"in {facts.source_env}: " + "; ".join(seen)) if seen else (
            f"no record of {what} in {facts.source_env}"
        )
        if facts.elsewhere:
            found += "; elsewhere: " + ", ".join(facts.elsewhere)
        check = Check(
            name="validated digest", ok=False, expected=expected, found=found,
            remedy=f"deploy {what} to {facts.source_env} first (gangway deploy --env "
            f"{facts.source_env} --sha …) and let it succeed, or promote from the environment "
            "that validated it",
        )
        raise _refuse(check, f"{what} has no validated image in {facts.source_env}")
    if len(digests) > 1:
        check = Check(
            name="validated digest", ok=False, expected=f"{what} maps to exactly one digest",
            found=f"{len(digests)} validated digests: " + ", ".join(digests),
            remedy="name the one to promote with --digest",
        )
        raise _refuse(check, f"{what} maps to {len(digests)} validated digests")
    source = valid[0]  # newest first: the latest proof of this digest there
    return source, Check(
        name="validated digest", ok=True, expected=expected,
        found=f"{source.kind} {source.deploy_id} succeeded with {source.digest}",
    )


def check_soak(facts: PromotionFacts, source: SourceRecord) -> Check:
    """The image has been live in the source at least the target's soak time."""
    need = facts.target.soak_s
    expected = (
        f"live in {facts.source_env} at least {need:g}s (promotion.soak_s of {facts.target_env})"
    )
    ended = source.finished_at
    soaked = (facts.now - ended).total_seconds() if ended else -1.0
    if ended is not None and soaked >= need:
        return Check(name="soak", ok=True, expected=expected,
                     found=f"{soaked:.0f}s since {source.kind} {source.deploy_id[:12]} ended")
    found = f"{max(soaked, 0):.0f}s since {source.kind} {source.deploy_id[:12]} ended"
    check = Check(
        name="soak", ok=False, expected=expected, found=found,
        remedy=f"wait {need - max(soaked, 0):.0f}s more and promote again",
    )
    raise _refuse(check, f"{source.digest[:19]}… has not soaked in {facts.source_env} yet")


def decide(facts: PromotionFacts) -> Verdict:
    """Path, validated digest, soak: the promotion may proceed to the schema check, or raises
    PromotionRefused naming expected, found and the remedy."""
    path = check_path(facts)
    source, validated = choose_source(facts)
    soak = check_soak(facts, source)
    return Verdict(source=source, checks=(path, validated, soak))


def check_schema(facts: SchemaFacts, target_env: str, source: SourceRecord) -> Check:
    """The target's schema after its pending migrations includes every column the image's
    code writes (the columns and revision the source deploy recorded)."""
    name = "schema requirement"
    if not facts.declared:
        return Check(name=name, ok=True, expected="absent: the target declares no database",
                     found="no [environment.database]: no schema to carry")
    expected = (
        f"{target_env}'s schema after its pending migrations has every column "
        f"{source.kind} {source.deploy_id[:12]} verified its code writes"
        + (f" (at revision {facts.required_revision})" if facts.required_revision else "")
    )
    if facts.unreadable:
        check = Check(name=name, ok=False, expected=expected, found=facts.unreadable,
                      remedy=f"bring {target_env}'s schema to a revision the image's "
                      "migrations know, or promote an image built with that revision")
        raise _refuse(check, f"{target_env}'s schema cannot be planned for this image")
    required = facts.required_revision
    if required and required not in facts.chain:
        check = Check(name=name, ok=False, expected=expected,
                      found=f"revision {required} is not in the image's migrations "
                      f"({', '.join(facts.chain) or 'none'})",
                      remedy="promote the commit whose migrations carry that revision")
        raise _refuse(check, f"the image's migrations do not reach revision {required}")
    missing: list[str] = []
    ok_names: list[str] = []
    for check in facts.live.checks if facts.live else ():
        table, _, column = check.name.partition(".")
        if check.ok:
            ok_names.append(check.name)
        elif check.found == "column does not exist" and column in facts.after_pending.get(
            table, set()
        ):
            ok_names.append(f"{check.name} (added by a pending revision)")
        else:
            missing.append(f"{check.name}: {check.found}")
    if missing:
        failed = Check(
            name=name, ok=False, expected=expected,
            found=f"{target_env} at {facts.current or 'base'}, pending "
            f"{', '.join(facts.pending) or 'none'}: " + "; ".join(missing),
            remedy=f"add the column(s) to {target_env} with an expand migration the image "
            "carries (or fix the drift by hand), then promote again; nothing moved",
        )
        raise _refuse(failed, f"{target_env}'s schema cannot carry the image: "
                      + ", ".join(m.split(":")[0] for m in missing))
    found = (
        f"at {facts.current or 'base'}, pending {', '.join(facts.pending) or 'none'}; "
        + (f"{len(ok_names)} written columns present" if facts.live else
           "no written columns recorded by the source deploy")
    )
    return Check(name=name, ok=True, expected=expected, found=found)
