"""Wait, inside a running flow run, for a second person to approve a promotion.

The run pauses with Prefect's typed input (ApprovalInput: decision and reason), so Prefect's
UI shows the form under the request's text, and `gangway approve` resumes it from a terminal.
Who decided is not a form field: `gangway approve` sends its own identity (tasks/approval.py)
in the hidden `approver` field, which the form does not show; a decision made in Prefect's UI
is recorded as UI_APPROVER, because open-source Prefect does not know who pressed the button.

A self-approval that reaches the run anyway (the API called directly) is logged and ignored:
the run pauses again, with what is left of its timeout, for someone else's decision. It is not
turned into a rejection, because then anyone could end a legitimate request by approving it
as its requester; the requester may still withdraw it with a rejection.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.states import Running
from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gangway.errors import ConfigError
from tasks.approval import (
    UI_APPROVER,
    ApprovalDecision,
    ApprovalRefused,
    ApprovalRequest,
    check_approver,
    render_request,
)

# The flow run input that marks a paused run as a gangway promotion and tells `gangway approve`
# what it is waiting for (the form's own keys hold only Prefect's schema and description).
REQUEST_KEY = "gangway-approval-request"
# Pause keys: one per pause of the same run, since Prefect refuses a key that already fired.
PAUSE_KEY = "gangway-approval"
MAX_POLL_S = 5


class ApprovalInput(RunInput):
    """The approver's answer: Prefect's UI renders decision and reason as its form."""

    # "ignore", not RunInput's "forbid": forbid publishes additionalProperties=false in the
    # schema Prefect's server validates a resume against, which would refuse the hidden field.
    model_config = ConfigDict(extra="ignore")

    decision: Literal["approve", "reject"] = Field(
        description="approve: the promotion runs the plan above; reject: it ends, nothing moved"
    )
    reason: str = Field(min_length=1, description="why (recorded with the promotion)")
    # Left out of the JSON schema, so no form shows it; `gangway approve` sets it.
    approver: SkipJsonSchema[str] = UI_APPROVER


def await_approval(request: ApprovalRequest) -> ApprovalDecision:
    """Pause the running flow run until approved, rejected or timed out; the decision."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise ConfigError(
            "an approval can only be awaited inside a running flow run",
            expected="await_approval called from the promote flow",
            found="no Prefect flow run context",
            remedy="call it from inside a @flow",
        )
    run_id = context.flow_run.id
    logger = get_run_logger()
    _publish_request(run_id, request)
    form = ApprovalInput.with_initial_data(description=render_request(request, str(run_id)))
    deadline = time.monotonic() + request.timeout_s
    attempt = 0
    while (remaining := deadline - time.monotonic()) >= 1:
        attempt += 1
        logger.info(
            "waiting up to %.0fs for approval of %s → %s (%s): gangway approve %s --reason …",
            remaining, request.source_env, request.target_env, request.digest, run_id,
        )
        try:
            answer = pause_flow_run(
                wait_for_input=form,
                timeout=math.ceil(remaining),
                poll_interval=max(1, min(MAX_POLL_S, int(request.timeout_s / 20))),
                key=f"{PAUSE_KEY}-{attempt}",
                _sync=True,  # a sync call even from an async flow, as this function is sync
            )
        except FlowPauseTimeout:
            break
        decided = datetime.now(UTC)
        if answer.decision == "reject":
            # The requester may withdraw their own request: only approving needs a second person.
            logger.info("promotion rejected by %s: %s", answer.approver, answer.reason)
            return ApprovalDecision(False, answer.approver, answer.reason, decided)
        try:
            check_approver(request, answer.approver)
        except ApprovalRefused as exc:
            logger.warning("approval ignored, waiting again:\n%s", exc.render())
            continue
        logger.info("promotion approved by %s: %s", answer.approver, answer.reason)
        return ApprovalDecision(True, answer.approver, answer.reason, decided)
    _resume_after_timeout(run_id)
    logger.warning("no decision within %.0fs: the promotion ends", request.timeout_s)
    return ApprovalDecision(
        approved=False,
        approver="",
        reason=f"no decision within {request.timeout_s:.0f}s",
        decided_at=datetime.now(UTC),
        timed_out=True,
    )


def _publish_request(run_id: UUID, request: ApprovalRequest) -> None:
    # The sync client, not prefect.input's helpers: those return coroutines in an async flow.
    with get_client(sync_client=True) as client:
        try:
            # Replaced, not added to: keys are unique per run and a retried run awaits again.
            client.delete_flow_run_input(run_id, REQUEST_KEY)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
        client.create_flow_run_input(run_id, REQUEST_KEY, json.dumps(request.to_json()))


def _resume_after_timeout(run_id: UUID) -> None:
    """Put a run whose pause expired back to Running, so the caller's flow ends as it decides.

    Prefect leaves such a run Paused, and its server turns the flow's final state into Failed
    ("paused and never resumed") when the flow reports it; forcing Running (the server refuses
    a plain resume after the deadline) lets the promote flow record its own ending instead.
    """
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_paused():
            client.set_flow_run_state(run_id, Running(), force=True)


@dataclass(frozen=True)
class PendingApproval:
    """A gangway promotion paused for approval: its run, its request, and the form's text."""

    run_id: UUID
    run_name: str
    request: ApprovalRequest
    description: str
    paused_since: datetime | None
    deadline: datetime | None


def find_pending(run_id: str) -> PendingApproval:
    """The promotion run_id names, paused for approval now, or ApprovalRefused saying why not."""
    try:
        flow_run_id = UUID(run_id.strip())
    except ValueError:
        raise ApprovalRefused(
            f"{run_id!r} is not a flow run id",
            expected="the id of the paused promotion's flow run (a UUID)",
            found=repr(run_id),
            remedy="list the promotions waiting for approval with `gangway approve --list`",
        ) from None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise ApprovalRefused(
                f"no flow run {flow_run_id} on the Prefect server",
                expected="a flow run of the Prefect server this shell points at (PREFECT_API_URL)",
                found="no such run",
                remedy="check PREFECT_API_URL; list waiting promotions: `gangway approve --list`",
            ) from None
        request = _request_of(client, flow_run_id)
        if request is None:
            raise ApprovalRefused(
                f"flow run {run.name} ({flow_run_id}) is not a gangway promotion",
                expected="a promotion paused by gangway's approval step",
                found=f"a run with no {REQUEST_KEY!r} input",
                remedy="resume other flow runs from Prefect's UI; list waiting promotions with "
                "`gangway approve --list`",
            )
        state = run.state
        details = state.state_details if state is not None else None
        keyset = details.run_input_keyset if details is not None else None
        if state is None or not state.is_paused() or keyset is None:
            raise ApprovalRefused(
                f"the promotion of {request.service} to {request.target_env} "
                f"({run.name}) is not waiting for approval",
                expected="a flow run in the Paused state waiting for an approval",
                found=f"state {state.name if state else 'none'}"
                + (f": {state.message}" if state and state.message else ""),
                remedy="it was already decided, timed out or ended: see it in Prefect's UI or "
                "`gangway ledger list`",
            )
        deadline = details.pause_timeout if details is not None else None
        description = _input_of(client, flow_run_id, keyset["description"])
    return PendingApproval(
        run_id=flow_run_id,
        run_name=run.name,
        request=request,
        description=description if isinstance(description, str) else render_request(request),
        paused_since=state.timestamp,
        deadline=deadline,
    )


def list_pending(limit: int = 50) -> list[PendingApproval]:
    """The gangway promotions paused for approval now, oldest first."""
    found: list[PendingApproval] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=limit,
        )
    for run in runs:
        try:
            found.append(find_pending(str(run.id)))
        except ApprovalRefused:  # another flow's pause, or decided since it was listed
            continue
    return found


def decide(pending: PendingApproval, approve: bool, reason: str, approver: str) -> None:
    """Resume the paused promotion with approver's decision; ApprovalRefused if not allowed."""
    if not reason.strip():
        raise ApprovalRefused(
            "a decision needs a reason",
            expected='--reason "why" (non-empty; it is recorded with the promotion)',
            found=repr(reason),
            remedy='e.g. --reason "staging soaked 2h, error rate flat"',
        )
    if approve:
        # The flow checks again (a resume through the API skips this); here it keeps the run
        # paused for someone else instead of spending one of its pauses.
        check_approver(pending.request, approver)
    answer = ApprovalInput(
        decision="approve" if approve else "reject", reason=reason.strip(), approver=approver
    )
    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(pending.run_id, run_input=answer.model_dump())
    if result.status == SetStateStatus.ACCEPT:
        return
    state = result.state
    timed_out = state is not None and state.is_failed()
    raise ApprovalRefused(
        f"Prefect did not resume the promotion of {pending.request.service} to "
        f"{pending.request.target_env} ({pending.run_name})",
        expected="a run still paused for approval",
        found=(
            "its approval timed out"
            if timed_out
            else f"{result.status.value}: {getattr(result.details, 'reason', '') or '-'}"
        ),
        remedy="nothing was decided; request the promotion again"
        if timed_out
        else "see the run in Prefect's UI",
    )


def _request_of(client: SyncPrefectClient, run_id: UUID) -> ApprovalRequest | None:
    value = _input_of(client, run_id, REQUEST_KEY)
    return ApprovalRequest.from_json(value) if isinstance(value, dict) else None


def _input_of(client: SyncPrefectClient, run_id: UUID, key: str) -> object:
    try:
        return json.loads(client.read_flow_run_input(run_id, key))
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None
        raise
