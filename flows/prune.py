"""`gangway prune`: observe, decide (gangway/prune_plan.py), then one of two executors.

A dry run observes without the lock and hands the plan to DryRunExecutor, which changes and
records nothing. A prune takes the environment's deploy lock (no deploy can publish or move
an alias while versions are deleted), observes under it, and hands the same kind of plan to
DeleteExecutor: Lambda versions first, then manifests, each deletion recorded as it happens
in one ledger record of kind "prune". A failed deletion does not stop the others; what was
deleted stays deleted and is on record.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gangway.config import (
    DeployConfig,
    ResolvedFunction,
    available_environments,
    deployments_dir,
    load_config,
)
from gangway.errors import ConfigError, GangwayError
from gangway.prune_plan import (
    Action,
    FunctionVersions,
    PruneInputs,
    PruneItem,
    PrunePlan,
    RouteState,
    plan_prune,
    successful_window,
)
from gangway.record import DeployRecord, Event, EventKind, Outcome
from tasks import lambda_read, lambda_versions
from tasks.env_lock import deploy_lock
from tasks.ledger import Ledger, of_service
from tasks.registry import registry_client

# The tag `gangway stack seed` pushes so that infrastructure can create the functions before
# any deploy: a function created from it still names it.
BOOTSTRAP_TAG = "bootstrap"
# How far back the ledger is read at first; widened until the window is full.
FIRST_READ = 50
MAX_READ = 3200
READ_POLL_S = 0.5  # between reads of an alias through its stale-read window


@dataclass
class PruneResult:
    """What a prune did: the plan, each deletion's outcome, and its ledger record."""

    plan: PrunePlan
    done: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    record: DeployRecord | None = None

    @property
    def ok(self) -> bool:
        """True when every planned deletion happened (or found the item already gone)."""
        return not self.failures


def service_records(ledger: Ledger, env: str, service: str, keep: int) -> list[DeployRecord]:
    """The service's records in env, newest first, reaching back far enough to hold its last
    `keep` succeeded ones, plus any attempt still running."""
    limit = FIRST_READ
    while True:
        found = ledger.recent(env, limit=limit)
        mine = [r for r in found if of_service(r, service)]
        if len(successful_window(mine, keep)) >= keep or len(found) < limit or limit >= MAX_READ:
            break
        limit *= 4
    seen = {r.deploy_id for r in mine}
    return mine + [r for r in ledger.running(env, service) if r.deploy_id not in seen]


def observe(config: DeployConfig, ledger: Ledger, keep: int) -> PruneInputs:
    """Read what the decision needs: versions and aliases, the ledger, the repository's tags."""
    env, service = config.environment.name, config.service.name
    alias = config.environment.alias
    functions = list(config.functions.values())

    window = config.environment.deploy.alias_read_window_s

    def read(fn: ResolvedFunction) -> FunctionVersions:
        # Deleting is the one irreversible step: the alias is read through the whole
        # stale-read window and every version any read routed to is kept.
        deadline = time.monotonic() + window
        state = lambda_read.read_alias(config, fn.name)
        seen = state.routed()
        while time.monotonic() < deadline:
            time.sleep(READ_POLL_S)
            state = lambda_read.read_alias(config, fn.name)
            seen |= state.routed()
        seen -= state.routed()
        return FunctionVersions(
            key=fn.key,
            name=fn.name,
            versions=lambda_versions.list_versions(config, fn.name),
            route=RouteState(alias, state.version, dict(state.weights), tuple(sorted(seen))),
        )

    with ThreadPoolExecutor(max_workers=min(8, len(functions) or 1)) as pool:
        observed = list(pool.map(read, functions))
    records = service_records(ledger, env, service, keep)
    environments = set(available_environments(deployments_dir(config.root))) | {env}
    windows = {
        name: successful_window(
            records if name == env else service_records(ledger, name, service, keep), keep
        )
        for name in sorted(environments)
    }
    repository = config.service.build.repository
    elsewhere, unread = _other_environments(config, sorted(environments - {env}))
    registry = registry_client(config)
    try:
        tags: dict[str, str] = {}
        for tag in registry.tags(repository):
            digest = registry.digest(repository, tag)
            if digest:
                tags[tag] = digest
    finally:
        registry.close()
    return PruneInputs(
        service=service,
        env=env,
        keep=keep,
        functions=observed,
        records=records,
        windows=windows,
        repository=repository,
        tags=tags,
        protected_tags={BOOTSTRAP_TAG: f"the {BOOTSTRAP_TAG} tag (functions are created from it)"},
        elsewhere=elsewhere,
        unread=unread,
    )


def _other_environments(
    config: DeployConfig, names: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Digests the published versions of the service's other environments run (those that
    share this registry and repository) → why, and the environments that could not be read."""
    elsewhere: dict[str, str] = {}
    unread: dict[str, str] = {}
    for name in names:
        try:
            other = load_config(name, project=config.root)
            if (other.environment.registry, other.service.build.repository) != (
                config.environment.registry,
                config.service.build.repository,
            ):
                continue
            for fn in other.functions.values():
                for version, digest in lambda_versions.list_versions(other, fn.name).items():
                    if digest:
                        elsewhere.setdefault(digest, f"{name} {fn.key} version {version} exists")
        except GangwayError as exc:
            unread[name] = exc.message
    return elsewhere, unread


class DryRunExecutor:
    """Carries out nothing and records nothing: the plan is the answer."""

    def run(self, plan: PrunePlan) -> PruneResult:
        """The plan, untouched."""
        return PruneResult(plan)


class DeleteExecutor:
    """Deletes what the plan lists, versions first, recording each deletion in the ledger."""

    def __init__(self, config: DeployConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger

    def run(self, plan: PrunePlan) -> PruneResult:
        """Delete every planned item; a failure is recorded and the rest still attempted."""
        result = PruneResult(plan)
        record = DeployRecord(
            kind="prune",
            service=plan.service,
            env=plan.env,
            commit_sha="",
        )
        self._emit(
            record,
            EventKind.STARTED,
            record.model_dump(mode="json", exclude={"outcome", "message", "finished_at"}),
        )
        self._note(record, "kept: " + ("; ".join(_describe(i) for i in plan.kept) or "nothing"))
        outcome, message = Outcome.FAILED, "interrupted before the end"
        try:
            undeleted: set[str] = set()
            for item in plan.deletions:
                if item.kind == "manifest" and item.ref in undeleted:
                    result.done[(item.where, item.ref)] = "kept (a version on it is still there)"
                    self._note(record, f"kept {_describe(item)}: a version on it was not deleted")
                    continue
                try:
                    existed = self._delete(item)
                except GangwayError as exc:
                    if item.kind == "version" and item.digest:
                        undeleted.add(item.digest)
                    result.done[(item.where, item.ref)] = "FAILED"
                    result.failures.append(f"{_describe(item)}: {exc.message}")
                    self._note(record, f"failed to delete {_describe(item)}: {exc.render()}")
                    continue
                result.done[(item.where, item.ref)] = "deleted" if existed else "already gone"
                self._note(
                    record, f"deleted {_describe(item)}" + ("" if existed else " (already gone)")
                )
            outcome = Outcome.FAILED if result.failures else Outcome.SUCCEEDED
            deleted = sum(1 for v in result.done.values() if v in ("deleted", "already gone"))
            message = f"deleted {deleted} of {len(plan.deletions)}, kept {len(plan.kept)}" + (
                f"; {len(result.failures)} failed" if result.failures else ""
            )
        finally:
            self._emit(record, EventKind.FINISHED, {"outcome": outcome.value, "message": message})
        result.record = self.ledger.get(record.deploy_id)
        return result

    def _delete(self, item: PruneItem) -> bool:
        if item.kind == "version":
            return lambda_versions.delete_version(self.config, item.where, item.ref)
        registry = registry_client(self.config)
        try:
            return registry.delete_manifest(item.where, item.ref)
        finally:
            registry.close()

    def _emit(self, record: DeployRecord, kind: EventKind, data: dict[str, object]) -> None:
        self.ledger.append(Event(deploy_id=record.deploy_id, kind=kind, data=data), record.env)

    def _note(self, record: DeployRecord, text: str) -> None:
        self._emit(record, EventKind.NOTE, {"text": text})


def _describe(item: PruneItem) -> str:
    if item.kind == "version":
        kept = f" ({', '.join(item.why)})" if item.action is Action.KEEP else ""
        return f"{item.where}:{item.ref}{kept}"
    tags = f" [{', '.join(item.tags)}]" if item.tags else ""
    kept = f" ({', '.join(item.why)})" if item.action is Action.KEEP else ""
    return f"{item.where}@{item.ref}{tags}{kept}"


def prune(
    env: str, keep: int = 5, dry_run: bool = False, project: str | None = None
) -> PruneResult:
    """Plan the prune of env's old versions and manifests, then carry it out (or, with
    dry_run, only return the plan)."""
    if keep < 1:
        raise ConfigError(
            f"--keep {keep} keeps no deploy's versions",
            expected="--keep N with N ≥ 1 (the previous version is a rollback target)",
            found=str(keep),
            remedy="pass --keep 1 or more (default 5)",
        )
    config = load_config(env, project=project)
    ledger = Ledger(secrets=config.secret_values())
    if dry_run:
        return DryRunExecutor().run(plan_prune(observe(config, ledger, keep)))
    service = config.service.name
    timeout_s = config.environment.deploy.lock_timeout_s
    holder = ledger.running(env, service)

    def describe_holder() -> str:
        if not holder:
            return "a deploy holding the lock (no running record in this ledger)"
        r = holder[0]
        return f"{r.kind} {r.deploy_id} by {r.actor}, started {r.started_at:%H:%M:%S}"

    with deploy_lock(config, timeout_s, describe_holder, "prune"):
        return DeleteExecutor(config, ledger).run(plan_prune(observe(config, ledger, keep)))
