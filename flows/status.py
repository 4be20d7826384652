"""What is live in an environment: alias → version → digest → commit, joined with the ledger.

Two halves: ``read_environment`` makes the reads (Lambda once per function and routed version,
in parallel; the ledger once; the schema and the lock once), and ``environment_status`` is the
pure join that decides, per routed version, which commit built it and which ledger record put
it there, or that nothing in the ledger does ("not from gangway"). Read-only: no flow run, no
lock taken, nothing written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gangway.config import DeployConfig
from gangway.errors import GangwayError
from gangway.record import DeployRecord, FunctionMove, Outcome
from tasks import lambda_read, schema
from tasks.aws import client
from tasks.env_lock import named_lock_holder
from tasks.lease_lock import active_lease_holder, lease_name
from tasks.ledger import Ledger
from tasks.migrations import lock_name

NOT_FROM_GANGWAY = "not from gangway"
# How far back the ledger is read for one environment: enough to reach the deploy that built
# the oldest version an alias can still route to after a run of failed attempts.
LEDGER_DEPTH = 200


@dataclass(frozen=True)
class VersionImage:
    """What one published version runs, as Lambda reports it."""

    digest: str
    image_uri: str


@dataclass(frozen=True)
class LiveRouting:
    """One function's alias as read now, with the image of every version it routes to."""

    key: str
    name: str
    alias: lambda_read.AliasState
    images: Mapping[str, VersionImage]


@dataclass(frozen=True)
class SchemaState:
    """The environment's schema revision, or why there is none to read."""

    declared: bool
    revision: str | None = None
    head: str | None = None
    note: str = ""

    def text(self) -> str:
        """e.g. 'a1b2c3 (head)', or '- (no database declared)'."""
        if not self.declared:
            return f"- ({self.note})"
        if self.revision is None:
            return "base (never migrated)"
        if self.revision == self.head:
            return f"{self.revision} (head)"
        return f"{self.revision} (head is {self.head})"


@dataclass(frozen=True)
class LockState:
    """The environment's deploy lock: a MySQL named lock or a lease, and its holder now."""

    kind: str
    name: str
    holder: str | None


@dataclass(frozen=True)
class PlacedBy:
    """The ledger record that last moved (or kept) the alias where it is."""

    deploy_id: str
    kind: str
    outcome: str
    commit_sha: str
    started_at: datetime


@dataclass(frozen=True)
class Route:
    """One version an alias routes to, with its weight, image and provenance."""

    version: str
    weight: float
    digest: str
    image_uri: str
    # The commit of the newest record that published this version (or carried its digest).
    commit_sha: str | None
    built_by: str | None
    placed_by: PlacedBy | None

    @property
    def from_gangway(self) -> bool:
        """True when the ledger explains why the alias routes to this version."""
        return self.placed_by is not None


@dataclass(frozen=True)
class FunctionStatus:
    """One function: its alias and every version it routes to (the primary first)."""

    key: str
    name: str
    alias: str
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class InProgress:
    """An attempt the ledger has not seen settle: a live deploy, or one that was killed."""

    deploy_id: str
    kind: str
    commit_sha: str
    actor: str
    started_at: datetime


@dataclass(frozen=True)
class EnvStatus:
    """What is live in one environment of one service (error: what could not be read)."""

    env: str
    service: str
    alias: str
    functions: tuple[FunctionStatus, ...] = ()
    schema: SchemaState | None = None
    lock: LockState | None = None
    in_progress: tuple[InProgress, ...] = ()
    error: str | None = None
    boundary: str | None = None


# --- the join (pure) -------------------------------------------------------------------------


def digest_of(code_sha256: str, resolved_image_uri: str) -> str:
    """The image digest a version runs: ResolvedImageUri's, else CodeSha256 as sha256:<hex>."""
    if "@" in resolved_image_uri:
        return resolved_image_uri.rpartition("@")[2]
    if code_sha256 and not code_sha256.startswith("sha256:"):
        return f"sha256:{code_sha256}"
    return code_sha256


def _left_at(record: DeployRecord, move: FunctionMove) -> set[str] | None:
    """The versions record left this function's alias on (None: it did not move the alias)."""
    if move.restored_to:
        return {move.restored_to}
    if record.outcome is Outcome.SUCCEEDED and move.version_after:
        return {move.version_after}
    if move.alias_moved:
        # Moving (a canary) or stopped mid-move without a recorded restore: either end.
        return {v for v in (move.version_before, move.version_after) if v}
    return None


def _placed_by(key: str, version: str, records: Sequence[DeployRecord]) -> PlacedBy | None:
    """The newest record that touched key's alias, if it left the alias on version."""
    for record in records:
        move = record.functions.get(key)
        left = _left_at(record, move) if move is not None else None
        if left is None:
            continue
        if version not in left:
            return None  # gangway last left it elsewhere: someone moved it since
        return PlacedBy(
            deploy_id=record.deploy_id,
            kind=record.kind,
            outcome=record.outcome.value,
            commit_sha=record.commit_sha,
            started_at=record.started_at,
        )
    return None


def _built_by(
    key: str, version: str, digest: str, records: Sequence[DeployRecord]
) -> DeployRecord | None:
    """The newest record that published version of key, else one that carried its digest."""
    for record in records:
        move = record.functions.get(key)
        if move is not None and move.version_after == version:
            return record
    if digest:
        return next((r for r in records if r.image_digest == digest), None)
    return None


def _routes(live: LiveRouting, records: Sequence[DeployRecord]) -> tuple[Route, ...]:
    extra = dict(sorted(live.alias.weights.items(), key=lambda kv: int(kv[0])))
    weights = {live.alias.version: max(0.0, 1.0 - sum(extra.values())), **extra}
    routes = []
    for version, weight in weights.items():
        image = live.images.get(version, VersionImage(digest="", image_uri=""))
        built = _built_by(live.key, version, image.digest, records)
        routes.append(
            Route(
                version=version,
                weight=weight,
                digest=image.digest,
                image_uri=image.image_uri,
                commit_sha=built.commit_sha if built else None,
                built_by=built.deploy_id if built else None,
                placed_by=_placed_by(live.key, version, records),
            )
        )
    return tuple(routes)


def environment_status(
    config: DeployConfig,
    live: Mapping[str, LiveRouting],
    records: Sequence[DeployRecord],
    schema_state: SchemaState,
    lock: LockState,
    running: Iterable[DeployRecord] = (),
) -> EnvStatus:
    """Join what Lambda routes to with the ledger (records newest first, of this service)."""
    ordered = sorted(records, key=lambda r: r.started_at, reverse=True)
    functions = tuple(
        FunctionStatus(
            key=key,
            name=live[key].name,
            alias=live[key].alias.name,
            routes=_routes(live[key], ordered),
        )
        for key in config.functions
        if key in live
    )
    return EnvStatus(
        env=config.environment.name,
        service=config.service.name,
        alias=config.environment.alias,
        functions=functions,
        schema=schema_state,
        lock=lock,
        in_progress=tuple(
            InProgress(
                deploy_id=r.deploy_id,
                kind=r.kind,
                commit_sha=r.commit_sha,
                actor=r.actor,
                started_at=r.started_at,
            )
            for r in running
        ),
    )


# --- the reads (thin) ------------------------------------------------------------------------


def _version_images(
    config: DeployConfig, described: Mapping[str, lambda_read.LiveFunction]
) -> dict[tuple[str, str], VersionImage]:
    """The image of every version an alias routes to, read in parallel (GetFunction each)."""
    lam = client(config, "lambda")
    wanted = [
        (fn.name, version)
        for fn in described.values()
        for version in (fn.alias.version, *fn.alias.weights)
    ]

    def read(pair: tuple[str, str]) -> VersionImage:
        response: dict[str, Any] = lambda_read.get_function(lam, *pair)
        code = response.get("Code", {})
        conf = response["Configuration"]
        return VersionImage(
            digest=digest_of(conf.get("CodeSha256", ""), code.get("ResolvedImageUri", "")),
            image_uri=code.get("ImageUri", ""),
        )

    with ThreadPoolExecutor(max_workers=min(8, len(wanted) or 1)) as pool:
        return dict(zip(wanted, pool.map(read, wanted), strict=True))


def read_live(config: DeployConfig) -> dict[str, LiveRouting]:
    """Every configured function's alias and the images of the versions it routes to."""
    described = lambda_read.describe_functions(config)
    images = _version_images(config, described)
    return {
        key: LiveRouting(
            key=key,
            name=fn.name,
            alias=fn.alias,
            images={v: img for (name, v), img in images.items() if name == fn.name},
        )
        for key, fn in described.items()
    }


def read_schema(config: DeployConfig) -> SchemaState:
    """The alembic revision, when the environment declares a database and migrations."""
    if config.environment.database is None:
        return SchemaState(declared=False, note="no database declared")
    if config.migrations_dir is None:
        return SchemaState(declared=False, note="no migrations declared")
    return SchemaState(
        declared=True,
        revision=schema.current_revision(config),
        head=schema.head_revision(config),
    )


def read_lock(config: DeployConfig, ledger: Ledger) -> LockState:
    """The deploy lock's holder now: the named lock on the database, else the lease."""
    if config.environment.database is None:
        name = lease_name(config)
        return LockState("lease", name, active_lease_holder(ledger, name))
    return LockState("named lock", lock_name(config, "deploy"), named_lock_holder(config))


def read_environment(config: DeployConfig, ledger: Ledger) -> EnvStatus:
    """Read one environment and join it; a boundary that fails is named in the result."""
    env, service = config.environment.name, config.service.name
    try:
        live = read_live(config)
        records = ledger.recent(env, limit=LEDGER_DEPTH, service=service)
        running = ledger.running(env, service)
        schema_state = read_schema(config)
        lock = read_lock(config, ledger)
    except GangwayError as exc:
        return EnvStatus(
            env=env,
            service=service,
            alias=config.environment.alias,
            error=exc.render(),
            boundary=exc.boundary,
        )
    return environment_status(config, live, records, schema_state, lock, running)
