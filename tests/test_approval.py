"""Approval of a promotion: a flow run paused for a second person, decided by `gangway approve`.

The identity rules are pure and tested as such. The rest runs on the stack's real Prefect
server: a small flow here awaits approval in a background thread, as the promote flow does,
and the CLI decides it in its own process under another CI identity (GITHUB_ACTOR).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import pause_flow_run

from flows.approval import ApprovalInput, await_approval
from tasks.approval import (
    UI_APPROVER,
    ApprovalRefused,
    ApprovalRequest,
    check_approver,
    person,
    render_request,
    requester_identity,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUESTER = "github:alice (promote 1001)"
PLAN = "1. migration lint\n2. deploy by digest\n3. shift alias live"


def request(timeout_s: float, requester: str = REQUESTER) -> ApprovalRequest:
    """A promotion request as the promote flow makes one."""
    return ApprovalRequest(
        service="demo-svc", source_env="staging", target_env="prod",
        digest="sha256:" + "ab" * 32, commit_sha="c0ffee" * 6 + "abcd", requester=requester,
        reason="CI blocked by an unrelated flake", plan_text=PLAN, timeout_s=timeout_s,
    )


# ---------------------------------------------------------------- pure: identity and rules


def test_identity_comes_from_ci_first_then_the_os() -> None:
    github = {"GITHUB_ACTOR": "alice", "GITHUB_WORKFLOW": "promote", "GITHUB_RUN_ID": "42",
              "GITLAB_USER_LOGIN": "bob"}
    assert requester_identity(github) == "github:alice (promote 42)"
    assert requester_identity({"GITLAB_USER_LOGIN": "bob", "CI_PIPELINE_ID": "7"}) == (
        "gitlab:bob (7)"
    )
    assert requester_identity(
        {"BUILDKITE_BUILD_CREATOR": "Carol C", "BUILDKITE_BUILD_CREATOR_EMAIL": "carol@x.io"}
    ) == "buildkite:carol@x.io"
    assert requester_identity({"BUILD_USER_ID": "dave", "JOB_NAME": "prod"}) == (
        "jenkins:dave (prod)"
    )
    # A blank CI variable names nobody: the OS user at this host is who acts.
    fallback = requester_identity({"GITHUB_ACTOR": "  "})
    assert fallback.endswith("@" + __import__("socket").gethostname())
    assert fallback.split("@")[0]


def test_the_requester_cannot_approve_from_another_system_or_machine() -> None:
    req = request(60)
    for same in ("github:alice (promote 1002)", "alice@laptop", "ALICE@ci-runner",
                 "buildkite:alice@corp.io"):
        with pytest.raises(ApprovalRefused, match="cannot approve"):
            check_approver(req, same)
    with pytest.raises(ApprovalRefused, match="without an approver"):
        check_approver(req, " ")
    check_approver(req, "github:bob (promote 1003)")
    check_approver(req, UI_APPROVER)
    assert person("gitlab:Bob (group/app 9)") == "bob"


def test_the_approver_sees_the_digest_the_plan_and_how_to_answer() -> None:
    text = render_request(request(60), "run-123")
    assert "sha256:" + "ab" * 32 in text and PLAN in text
    assert "staging → prod" in text and "github:alice" in text
    assert "gangway approve run-123" in text
    assert ApprovalRequest.from_json(request(60).to_json()) == request(60)


def test_the_form_has_no_approver_field() -> None:
    # Whoever fills Prefect's form must not be able to type a name into the record.
    schema = ApprovalInput.model_json_schema()
    assert set(schema["properties"]) == {"decision", "reason"}
    assert "additionalProperties" not in schema  # the CLI's hidden field passes the server


# ---------------------------------------------------------------- on the Prefect server


@flow(name="gangway-approval-test")
def awaiting(request_json: dict[str, Any]) -> dict[str, Any]:
    """What the promote flow does first: await approval, return the decision."""
    return dataclasses.asdict(await_approval(ApprovalRequest.from_json(request_json)))


@flow(name="gangway-approval-test-other")
def other_pause() -> None:
    """Some other flow's pause, not a gangway promotion."""
    pause_flow_run(timeout=120, poll_interval=1)


@dataclass
class Running:
    """A flow run in a background thread, and what it returned or raised."""

    name: str
    thread: threading.Thread | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: list[BaseException] = field(default_factory=list)

    def run(self) -> FlowRun:
        """The flow run as the server has it now."""
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[self.name]))
            )
        assert len(runs) <= 1
        return runs[0] if runs else None  # type: ignore[return-value]

    def paused(self, pause_key: str | None = None) -> FlowRun:
        """Wait (bounded) until the run is paused (at pause_key when given); the run."""
        for _ in range(240):
            current = self.run()
            state = current.state if current else None
            if state and state.is_paused() and (
                pause_key is None or state.state_details.pause_key == pause_key
            ):
                return current
            assert self.thread and self.thread.is_alive(), f"flow ended: {self.error}"
            time.sleep(0.25)
        raise AssertionError(f"{self.name} never paused: {self.run()}")

    def outcome(self) -> dict[str, Any]:
        """Join the thread; the flow's return value."""
        assert self.thread is not None
        self.thread.join(timeout=300)
        assert not self.thread.is_alive(), "the flow run did not end"
        assert not self.error, self.error
        return self.result


@pytest.fixture(scope="module")
def prefect_api() -> str:
    """The stack's Prefect server, up (its URL comes from GANGWAY_HOME/stack.env)."""
    url = os.environ.get("PREFECT_API_URL", "")
    assert url, "PREFECT_API_URL unset: no stack.env in GANGWAY_HOME (run `gangway stack up`)"
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200, f"Prefect server at {url}: {health.status_code}"
    return url


@contextmanager
def promotion(timeout_s: float, requester: str = REQUESTER) -> Iterator[Running]:
    """An `awaiting` flow run in a background thread, as the promote flow would pause."""
    running = Running(name=f"approval-test-{uuid.uuid4().hex[:10]}")
    target = awaiting.with_options(flow_run_name=running.name)

    def body() -> None:
        try:
            running.result.update(target(request(timeout_s, requester).to_json()))
        except BaseException as exc:  # reported by outcome(), in the test's thread
            running.error.append(exc)

    running.thread = threading.Thread(target=body, daemon=True)
    running.thread.start()
    try:
        yield running
    finally:
        running.thread.join(timeout=timeout_s + 60)


def gangway(*args: str, actor: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, acting as GitHub user `actor`."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITLAB_USER_LOGIN",)}
    env.update(GITHUB_ACTOR=actor, GITHUB_WORKFLOW="approve", GITHUB_RUN_ID="77",
               PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cli", "approve", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env,
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    """What to print when an assertion about a run fails."""
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


def test_approve_from_another_identity_resumes_with_approver_and_reason(
    prefect_api: str,
) -> None:
    with promotion(300) as running:
        paused = running.paused()
        run_id = str(paused.id)
        keyset = paused.state.state_details.run_input_keyset
        with get_client(sync_client=True) as client:
            form = client.read_flow_run_input(paused.id, keyset["schema"])
            shown = client.read_flow_run_input(paused.id, keyset["description"])
        assert '"approver"' not in form and '"decision"' in form
        assert PLAN.splitlines()[1] in shown.replace("\\n", "\n")

        listed = gangway("--list", actor="bob")
        assert listed.returncode == 0 and run_id in listed.stdout, explain(listed)

        done = gangway(run_id, "--reason", "ok", actor="bob")
        assert done.returncode == 0, explain(done)
        assert "sha256:" + "ab" * 32 in done.stdout and PLAN.splitlines()[2] in done.stdout
        decision = running.outcome()
    assert decision["approved"] is True and decision["timed_out"] is False
    assert decision["approver"] == "github:bob (approve 77)"
    assert decision["reason"] == "ok"
    assert running.run().state.is_completed()

    again = gangway(run_id, "--reason", "twice", actor="carol")
    assert again.returncode == 2, explain(again)
    assert "not waiting for approval" in again.stderr


def test_self_approval_is_refused_and_the_run_waits_for_someone_else(prefect_api: str) -> None:
    with promotion(300) as running:
        paused = running.paused()
        mine = gangway(str(paused.id), "--reason", "lgtm", actor="alice")
        assert mine.returncode == 2, explain(mine)
        assert "cannot approve" in mine.stderr
        assert running.run().state.is_paused()  # nothing was sent to the run

        # Around the CLI, straight to Prefect's API: the flow ignores it and pauses again.
        with get_client(sync_client=True) as client:
            client.resume_flow_run(
                paused.id,
                run_input={"decision": "approve", "reason": "sneaky", "approver": "alice@laptop"},
            )
        running.paused(pause_key="gangway-approval-2")

        done = gangway(str(paused.id), "--reject", "--reason", "not today", actor="bob")
        assert done.returncode == 0, explain(done)
        decision = running.outcome()
    assert decision["approved"] is False and decision["timed_out"] is False
    assert decision["approver"] == "github:bob (approve 77)"
    assert decision["reason"] == "not today"


def test_a_decision_through_prefects_form_is_recorded_as_the_ui(prefect_api: str) -> None:
    with promotion(300) as running:
        paused = running.paused()
        with get_client(sync_client=True) as client:  # what the UI's form posts
            client.resume_flow_run(paused.id, run_input={"decision": "approve", "reason": "ui"})
        decision = running.outcome()
    assert decision["approved"] is True and decision["approver"] == UI_APPROVER


def test_no_decision_times_out_and_the_flow_ends_on_its_own_terms(prefect_api: str) -> None:
    with promotion(3) as running:
        decision = running.outcome()
    assert decision["timed_out"] is True and decision["approved"] is False
    assert decision["approver"] == ""
    # Prefect alone would turn the flow's ending into Failed ("paused and never resumed").
    assert running.run().state.is_completed(), running.run().state


def test_runs_that_are_not_paused_gangway_promotions_are_refused(prefect_api: str) -> None:
    bad = gangway("not-a-uuid", "--reason", "x", actor="bob")
    assert bad.returncode == 2 and "not a flow run id" in bad.stderr, explain(bad)
    missing = gangway(str(uuid.uuid4()), "--reason", "x", actor="bob")
    assert missing.returncode == 2 and "no flow run" in missing.stderr, explain(missing)

    name = f"approval-other-{uuid.uuid4().hex[:10]}"
    other = Running(name=name)
    other.thread = threading.Thread(
        target=lambda: other_pause.with_options(flow_run_name=name)(), daemon=True
    )
    other.thread.start()
    paused = other.paused()
    try:
        done = gangway(str(paused.id), "--reason", "x", actor="bob")
        assert done.returncode == 2, explain(done)
        assert "not a gangway promotion" in done.stderr
        assert other.run().state.is_paused()
    finally:
        with get_client(sync_client=True) as client:
            client.resume_flow_run(paused.id)
        other.thread.join(timeout=60)
