"""Deciding what `gangway prune` keeps and deletes: pure, from observed state, printable.

``plan_prune`` reads nothing: given the functions' published versions and aliases, the
ledger's records and the repository's tags, it says per Lambda version and per manifest
digest whether it stays and why. A dry run prints the plan; the prune executor carries it
out. Neither branches on the other. Everything that can still be rolled back to is kept:
what an alias routes to (canary weights included), the previous version, every version and
digest of the last N successful records (of any environment, for the digests: a digest
validated in dev is a promotion source for staging and prod).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gangway.record import TRAFFIC_KINDS, DeployRecord, Outcome
from gangway.render import table

LATEST = "$LATEST"
# Records whose versions are rollback targets; a prune's own record moves nothing.


class Action(StrEnum):
    """What the prune does with one item."""

    KEEP = "keep"
    DELETE = "delete"


@dataclass(frozen=True)
class RouteState:
    """Where an alias sends traffic: its version and any canary weights (version → weight)."""

    alias: str
    version: str
    weights: dict[str, float] = field(default_factory=dict)
    # Versions other reads of the alias routed to while it was read: alias reads may be
    # stale for a moment after a write, and a version that may carry traffic is kept.
    also_seen: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionVersions:
    """One function as observed: its published versions (→ image digest) and its alias."""

    key: str
    name: str
    versions: dict[str, str | None]
    route: RouteState


@dataclass(frozen=True)
class PruneInputs:
    """Everything the decision needs, read beforehand (flows/prune.py observes it)."""

    service: str
    env: str
    keep: int
    functions: Sequence[FunctionVersions]
    # This environment's records of the service, newest first (all outcomes; pruning looks
    # at succeeded ones and at attempts still running).
    records: Sequence[DeployRecord]
    # Every environment's kept window (its last `keep` succeeded records), by environment.
    windows: dict[str, Sequence[DeployRecord]]
    repository: str
    tags: dict[str, str]  # tag → manifest digest
    protected_tags: dict[str, str]  # tag → why (the bootstrap tag)
    # Digests that published versions of the service's OTHER environments (sharing this
    # repository) run → why; deleting one would break that environment's rollback.
    elsewhere: dict[str, str] = field(default_factory=dict)
    # Environments whose versions could not be read → why: then no manifest is deleted.
    unread: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneItem:
    """One Lambda version or one registry manifest, and what happens to it."""

    kind: str  # "version" or "manifest"
    where: str  # the function's name, or the repository
    ref: str  # the version number, or the manifest digest
    action: Action
    why: tuple[str, ...]
    digest: str | None = None  # a version's image; a manifest's own digest
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrunePlan:
    """What a prune keeps (and why) and deletes, versions before manifests."""

    service: str
    env: str
    keep: int
    window: tuple[str, ...]  # the deploy ids whose versions are kept, newest first
    items: tuple[PruneItem, ...]

    @property
    def deletions(self) -> tuple[PruneItem, ...]:
        """The items to delete, in the order they are deleted (versions first)."""
        return tuple(i for i in self.items if i.action is Action.DELETE)

    @property
    def kept(self) -> tuple[PruneItem, ...]:
        """The items that stay."""
        return tuple(i for i in self.items if i.action is Action.KEEP)


def digest_of(reference: str | None) -> str | None:
    """The sha256 digest in an image reference (`repo@sha256:…`, `sha256:…` or bare hex)."""
    if not reference:
        return None
    tail = reference.rsplit("@", 1)[-1]
    if tail.startswith("sha256:"):
        return tail
    hexdigits = set("0123456789abcdef")
    return f"sha256:{tail}" if len(tail) == 64 and set(tail) <= hexdigits else None


def successful_window(records: Iterable[DeployRecord], keep: int) -> list[DeployRecord]:
    """The newest `keep` succeeded records that moved traffic (deploy, promote, rollback)."""
    moved = [r for r in records if r.kind in TRAFFIC_KINDS and r.outcome is Outcome.SUCCEEDED]
    return moved[:keep]


def _short(record: DeployRecord) -> str:
    return f"{record.kind} {record.deploy_id[:12]}"


def _version_reasons(
    inputs: PruneInputs, window: list[DeployRecord]
) -> dict[str, dict[str, list[str]]]:
    """Function key → version → why it stays."""
    reasons: dict[str, dict[str, list[str]]] = {fn.key: {} for fn in inputs.functions}

    def keep(key: str, version: str | None, why: str) -> None:
        if key in reasons and version and version != LATEST:
            reasons[key].setdefault(version, []).append(why)

    for fn in inputs.functions:
        keep(fn.key, fn.route.version, f"alias {fn.route.alias}")
        for version, weight in fn.route.weights.items():
            keep(fn.key, version, f"alias {fn.route.alias} canary {weight:.0%}")
        for version in fn.route.also_seen:
            keep(fn.key, version, f"alias {fn.route.alias} (another read of it, maybe stale)")
    if window:
        for key, move in window[0].functions.items():
            keep(key, move.version_before, f"previous (before {_short(window[0])})")
    for record in window:
        for key, move in record.functions.items():
            keep(key, move.version_before, f"before {_short(record)}")
            keep(key, move.version_after, f"after {_short(record)}")
    for record in inputs.records:
        if record.outcome is Outcome.RUNNING:
            for key, move in record.functions.items():
                keep(key, move.version_before, f"{_short(record)} in progress")
                keep(key, move.version_after, f"{_short(record)} in progress")
    return reasons


def _record_digests(record: DeployRecord) -> set[str]:
    found = {digest_of(record.image_digest)}
    for move in record.functions.values():
        found |= {digest_of(move.image_before), digest_of(move.image_after)}
    return {d for d in found if d}


def plan_prune(inputs: PruneInputs) -> PrunePlan:
    """Decide, per published version and per manifest, keep (with every reason) or delete."""
    window = successful_window(inputs.records, inputs.keep)
    reasons = _version_reasons(inputs, window)
    items: list[PruneItem] = []
    digest_reasons: dict[str, list[str]] = {}
    for fn in inputs.functions:
        items.append(
            PruneItem("version", fn.name, LATEST, Action.KEEP, ("$LATEST is never deleted",))
        )
        for version in sorted(fn.versions, key=_version_order):
            digest = fn.versions[version]
            why = reasons[fn.key].get(version)
            if why:
                items.append(
                    PruneItem("version", fn.name, version, Action.KEEP, tuple(why), digest)
                )
                if digest:
                    digest_reasons.setdefault(digest, []).append(
                        f"{inputs.env} {fn.key} version {version} (kept)"
                    )
            else:
                items.append(
                    PruneItem(
                        "version",
                        fn.name,
                        version,
                        Action.DELETE,
                        (f"not routed, not previous, not in the last {inputs.keep} succeeded",),
                        digest,
                    )
                )
    for env, records in sorted(inputs.windows.items()):
        for record in records:
            for digest in sorted(_record_digests(record)):
                digest_reasons.setdefault(digest, []).append(f"{env} {_short(record)}")
    for digest, why in inputs.elsewhere.items():
        digest_reasons.setdefault(digest, []).append(why)
    blind = [f"{env} unread ({why}): its versions may use it" for env, why in inputs.unread.items()]
    by_digest: dict[str, list[str]] = {}
    for tag, digest in sorted(inputs.tags.items()):
        by_digest.setdefault(digest, []).append(tag)
        if tag in inputs.protected_tags:
            digest_reasons.setdefault(digest, []).append(inputs.protected_tags[tag])
    for digest, tags in sorted(by_digest.items()):
        why = digest_reasons.get(digest) or blind
        action = Action.KEEP if why else Action.DELETE
        items.append(
            PruneItem(
                "manifest",
                inputs.repository,
                digest,
                action,
                tuple(_unique(why)) if why else ("no kept version or window record uses it",),
                digest,
                tuple(tags),
            )
        )
    return PrunePlan(
        service=inputs.service,
        env=inputs.env,
        keep=inputs.keep,
        window=tuple(r.deploy_id for r in window),
        items=tuple(i for i in items if i.kind == "version")
        + tuple(i for i in items if i.kind == "manifest"),
    )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def render_prune_plan(plan: PrunePlan, done: dict[tuple[str, str], str] | None = None) -> str:
    """The plan as a table (function/repository, version/digest, keep|delete, why); with
    done (kind, ref → outcome) the outcome of each deletion replaces its action."""
    rows = []
    for item in plan.items:
        ref = item.ref if item.kind == "version" else item.ref[:19]
        if item.tags:
            more = ", …" if len(item.tags) > 3 else ""
            ref += f" ({', '.join(t[:24] for t in item.tags[:3])}{more})"
        action = (done or {}).get((item.where, item.ref), item.action.value)
        rows.append((item.where, ref, action, "; ".join(item.why)))
    head = (
        f"prune {plan.service} in {plan.env}: keep the last {plan.keep} succeeded "
        f"({', '.join(d[:12] for d in plan.window) or 'none'})\n"
        f"{len(plan.deletions)} to delete, {len(plan.kept)} kept\n\n"
    )
    return head + table(("function/repository", "version/digest", "action", "why"), rows)
