"""The deploy record and the events it is derived from.

A deploy appends events (started, step, gate, moving, restored, finished, ...) and never
rewrites one; the record the CLI and Prefect show is the fold of its events. A late event can
add to a record, never take anything away: once an outcome is final, a later ``finished`` is
kept as a note rather than replacing it, so a failure while finishing cannot erase evidence.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field

from gangway.evidence import GateResult


class Outcome(StrEnum):
    """How a deploy attempt ended (RUNNING until it does)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    BLOCKED = "blocked"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"  # bad input: refused before any side effect


class FunctionMove(BaseModel):
    """One function's versions around a deploy."""

    name: str
    version_before: str | None = None
    version_after: str | None = None
    image_before: str | None = None
    image_after: str | None = None
    alias_moved: bool = False
    restored_to: str | None = None
    restore_verified: bool | None = None


class StepRecord(BaseModel):
    """A step as it ran: its status and how long it took."""

    name: str
    status: str
    seconds: float = 0.0
    detail: str = ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# Record kinds that move aliases (and so can leave them to recover, or be rolled back to);
# prune and unlock records move nothing.
TRAFFIC_KINDS = frozenset({"deploy", "promote", "rollback"})
# Gates that judge the new version itself after traffic moved (log scans are per function).
NEW_VERSION_GATES = frozenset({"smoke", "log scan", "ground truth", "bake"})


class DeployRecord(BaseModel):
    """The artifact chain of one deploy: SHA → digest → versions → schema → gate evidence."""

    deploy_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    kind: str = "deploy"
    # The service (service.name) deployed: several services share a ledger and an
    # environment's name. Empty on records written before services were named.
    service: str = ""
    env: str
    commit_sha: str
    dirty: bool = False
    image_ref: str | None = None
    image_digest: str | None = None
    schema_before: str | None = None
    schema_after: str | None = None
    functions: dict[str, FunctionMove] = Field(default_factory=dict)
    gates: list[GateResult] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    traffic: dict[str, Any] = Field(default_factory=dict)
    outcome: Outcome = Outcome.RUNNING
    trigger: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    message: str = ""
    notes: list[str] = Field(default_factory=list)
    actor: str = Field(default_factory=lambda: f"{_user()}@{socket.gethostname()}")
    flow_run_id: str | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def evidence(self) -> str:
        """The strongest evidence about the new version that passed: what a success proved
        (ground-truth > observability > content); "none" before any such gate passed."""
        order = ["content", "observability", "ground-truth"]
        reached = [
            order.index(str(g.strength))
            for g in self.gates
            if g.gate in NEW_VERSION_GATES and g.status.value == "passed"
        ]
        return order[max(reached)] if reached else "none"


class EventKind(StrEnum):
    """What an event adds to a record."""

    STARTED = "started"  # the attempt's identity: env, commit, traffic, actor, flow run
    OBSERVED = "observed"  # the world before: schema, the functions' live versions
    STEP = "step"  # a plan step ended: passed, failed, blocked, skipped
    GATE = "gate"  # a gate's evidence
    IMAGE = "image"  # the image reference and digest
    SCHEMA = "schema"  # the schema revision after migrating
    VERSIONS = "versions"  # the published versions and their images
    MOVING = "moving"  # aliases about to move: written BEFORE the call
    TRIGGER = "trigger"  # what stopped the deploy
    RESTORED = "restored"  # a rollback: per function where the alias is now, read back
    NOTE = "note"  # anything worth keeping in words
    FINISHED = "finished"  # the outcome (once; later ones are kept as notes)
    RECOVERED = "recovered"  # a later actor put an abandoned deploy's aliases back
    SNAPSHOT = "snapshot"  # a whole record imported from the pre-event ledger


class Event(BaseModel):
    """One append-only fact about one deploy attempt."""

    deploy_id: str
    kind: EventKind
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    data: dict[str, Any] = Field(default_factory=dict)


FINAL = frozenset(o for o in Outcome if o is not Outcome.RUNNING)


def apply(record: DeployRecord | None, event: Event) -> DeployRecord:
    """The record after one more event (pure): lists grow, facts are added, nothing erased."""
    if record is None:
        if event.kind is EventKind.SNAPSHOT:
            return DeployRecord.model_validate(event.data)
        if event.kind is not EventKind.STARTED:
            raise ValueError(f"a record starts with a started event, not {event.kind}")
        return DeployRecord.model_validate({**event.data, "deploy_id": event.deploy_id})
    return apply_to(record.model_copy(deep=True), event)


def apply_to(r: DeployRecord, event: Event) -> DeployRecord:
    """Fold one more event into r itself (for a record only its writer holds) and return it."""
    d = event.data
    match event.kind:
        case EventKind.STARTED | EventKind.SNAPSHOT:
            r.notes.append(f"ignored a second {event.kind} event at {event.at:%H:%M:%S}")
        case EventKind.OBSERVED:
            r.schema_before = d.get("schema_before")
            r.functions = {k: FunctionMove.model_validate(v) for k, v in d["functions"].items()}
        case EventKind.STEP:
            r.steps.append(StepRecord.model_validate(d))
        case EventKind.GATE:
            r.gates.append(GateResult.model_validate(d))
        case EventKind.IMAGE:
            r.image_ref = d.get("image_ref") or r.image_ref
            r.image_digest = d.get("image_digest") or r.image_digest
        case EventKind.SCHEMA:
            r.schema_after = d.get("schema_after")
        case EventKind.VERSIONS:
            for key, v in d["functions"].items():
                move = r.functions.setdefault(key, FunctionMove(name=v.get("name", key)))
                move.version_after = v.get("version_after")
                move.image_after = v.get("image_after")
        case EventKind.MOVING:
            for key in d["functions"]:
                r.functions[key].alias_moved = True
        case EventKind.TRIGGER:
            r.trigger = r.trigger or d
        case EventKind.RESTORED | EventKind.RECOVERED:
            _restored(r, event)
        case EventKind.NOTE:
            r.notes.append(str(d.get("text", "")))
        case EventKind.FINISHED:
            if r.outcome in FINAL:
                r.notes.append(
                    f"later, at {event.at:%H:%M:%S}: {d.get('outcome')}: {d.get('message', '')}"
                )
            else:
                r.outcome = Outcome(d["outcome"])
                r.message = str(d.get("message", ""))
                r.finished_at = event.at
    return r


def _restored(r: DeployRecord, event: Event) -> None:
    d = event.data
    for key, state in d.get("functions", {}).items():
        move = r.functions.get(key)
        if move is None or not isinstance(state, dict) or "to" not in state:
            if move is not None:
                move.restore_verified = False
            continue
        move.restored_to = state["to"]
        move.restore_verified = bool(state.get("verified"))
    rollback = {k: v for k, v in d.items() if k not in ("outcome", "message")}
    if event.kind is EventKind.RECOVERED:
        if r.rollback is not None:
            rollback["failed"] = r.rollback
        if r.outcome is Outcome.RUNNING:
            r.outcome = Outcome(d.get("outcome", Outcome.INTERRUPTED))
            r.message = str(d.get("message", ""))
        elif d.get("message"):
            r.message += f"; {d['message']}"
        r.finished_at = r.finished_at or event.at
    r.rollback = rollback


def fold(events: Iterable[Event]) -> DeployRecord:
    """The record an attempt's events describe, in the order they were appended."""
    record: DeployRecord | None = None
    for event in events:
        record = apply(None, event) if record is None else apply_to(record, event)
    if record is None:
        raise ValueError("no events")
    return record
