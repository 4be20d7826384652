"""Doing, apart from deciding: executors of a deploy plan.

``Executor`` runs exactly the plan's steps, in order, each as a Prefect task with the step's
timeout and retry policy, each waiting for the one before (so Prefect's graph is the chain).
Every step result, gate result, traffic move and restore is appended to the ledger as an event.
Its one guarantee, written once here and not inside any step: once a step has moved traffic,
any failure, trigger or interrupt after it restores the aliases and reads them back.
``DisplayExecutor`` is the dry run: the same plan, printed instead of run.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from flows import rollback
from flows.deploy_steps import HANDLERS, Done, Run
from gangway import interrupts
from gangway.errors import GangwayError
from gangway.evidence import GateFailed, GateResult
from gangway.plan import DeployPlan, PlannedStep, render_plan
from gangway.record import DeployRecord, EventKind, Outcome
from gangway.render import gate_markdown, record_markdown, slug
from tasks import prefect_task
from tasks.prefect_task import step as as_task


class DeployInterrupted(GangwayError):
    """The deploy process was interrupted (Ctrl-C, SIGTERM) or crashed mid-step."""

    boundary = "orchestration"


class DisplayExecutor:
    """The dry run: renders the plan a real run would execute, changes nothing."""

    def run(self, plan: DeployPlan) -> DeployPlan:
        """Log the plan as a table and return it."""
        get_run_logger().info("dry run: nothing changed\n%s", render_plan(plan))
        return plan


class Executor:
    """Runs a plan's steps as chained Prefect tasks; restores moved traffic on any stop."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.log = get_run_logger()
        self.current = "start"
        self.previous: State[Any] | None = None

    @property
    def record(self) -> DeployRecord:
        """The attempt's record as its events describe it so far."""
        return self.run.record

    def execute(self) -> DeployRecord:
        """Run every step in order; block, roll back or succeed; always record the end."""
        try:
            if self.run.plan.absent:
                self.run.note(
                    "gates this service does not declare: "
                    + "; ".join(f"{name} ({why})" for name, why in self.run.plan.absent)
                )
            for planned in self.run.plan.steps:
                self.step(planned)
            interrupts.check()
            self.current = "success"
            prefect_task.require_api()  # a success Prefect cannot be told of is not recorded
            self.run.fence()  # success is recorded only by the deploy that still holds the lock
            self.finish(Outcome.SUCCEEDED, self.run.already_live or "deployed and verified")
        except GateFailed as exc:
            self.fail(exc, gate=exc.result)
        except GangwayError as exc:
            self.fail(exc)
        except BaseException as exc:  # interrupt, cancellation, crash: traffic first
            # Prefect 3.8 turns a Ctrl-C that lands while a task run starts into ValueError
            # ("Task run is not set"): the recorded request says what really happened.
            stop = interrupts.requested()
            self.fail(stop or exc, interrupted=True)
            if stop is not None and not isinstance(exc, type(stop)):
                raise type(stop)(*stop.args) from exc
            raise
        return self.record

    def step(self, planned: PlannedStep) -> None:
        """One plan step as a Prefect task after the previous one; its result is recorded."""
        self.current = planned.name
        interrupts.check()  # a Ctrl-C whose exception got lost still stops the deploy here
        # The rule for a Prefect API that went away (README, "Plan, executor, record"): no
        # step runs, and no traffic moves, that its orchestrator can neither see nor cancel.
        prefect_task.require_api()
        if planned.moves_traffic:
            # A deploy that lost its lock stops here: another may hold it and move aliases.
            self.run.fence()
            moving = self.run.moving_keys()
            if moving:
                # Recorded BEFORE the call: a kill in between still knows where to go back.
                self.run.emit(EventKind.MOVING, {"functions": sorted(moving)})
        handler = HANDLERS[planned.kind]
        run = self.run

        def body() -> GateResult | Done:
            return handler(run)

        body.__name__ = body.__qualname__ = planned.kind.name.lower()
        task = as_task(planned.name, timeout_s=planned.timeout_s, retries=planned.retries)(
            body
        ).with_options(task_run_name=planned.name)
        started = time.monotonic()
        try:
            state = task(return_state=True, wait_for=[self.previous] if self.previous else None)
            self.previous = state
            result = state.result()
        except BaseException:
            self.run.emit(
                EventKind.STEP,
                {"name": planned.name, "status": "failed", "seconds": time.monotonic() - started},
            )
            raise
        seconds = time.monotonic() - started
        if isinstance(result, Done):
            self.run.emit(
                EventKind.STEP,
                {
                    "name": planned.name,
                    "status": result.status,
                    "seconds": seconds,
                    "detail": result.detail,
                },
            )
            return
        self.evidence(result)
        self.run.emit(
            EventKind.STEP,
            {
                "name": planned.name,
                "status": result.status.value,
                "seconds": seconds,
                "detail": f"{result.strength}: {len(result.checks)} checks"
                + (f", {len(result.failures)} failed" if result.failures else ""),
            },
        )
        result.raise_if_failed()

    def evidence(self, result: GateResult) -> None:
        """Record a gate's result, publish it as a Prefect artifact and log its summary."""
        self.run.emit(EventKind.GATE, result.model_dump(mode="json"))
        # Probed first: an artifact call to an API that went away during the step would wait
        # out Prefect's own retries (~62 s) before failing.
        prefect_task.require_api()
        try:
            create_markdown_artifact(
                key=f"{self.run.plan.env}-{slug(result.gate)}",
                markdown=gate_markdown(result),
                description=f"{result.summary()} [{result.strength}]",
            )
        except httpx.TransportError:
            # Gone since the probe just above: say so as the probe would.
            prefect_task.require_api()
            raise
        self.log.info(result.summary())

    # -- endings ------------------------------------------------------------------------
    def restore(self) -> dict[str, object]:
        """Put every moved alias back on its recorded version and read it back, unless
        another deploy has moved it since (then it is left alone and said so)."""
        moved = {k: m for k, m in self.record.functions.items() if m.alias_moved}
        previous = {m.name: self.run.observed.live[k].alias for k, m in moved.items()}
        moved_to = {n: s for n, s in self.run.moved_to.items() if n in previous}
        return rollback.restore(self.run.config, moved, previous, moved_to=moved_to)

    def fail(
        self, exc: BaseException, gate: GateResult | None = None, interrupted: bool = False
    ) -> None:
        """Stop: restore moved traffic first, then record the trigger, rollback and outcome."""
        step = self.current
        moved = any(m.alias_moved for m in self.record.functions.values())
        if not isinstance(exc, GangwayError):
            exc = DeployInterrupted(
                f"the deploy stopped during {step}: {type(exc).__name__}",
                expected="the deploy to run to its end",
                found=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                remedy="the moved aliases were put back (see the rollback); re-run the deploy"
                if moved
                else "nothing had moved; re-run the deploy",
            )
        rollback = self.restore() if moved else None
        trigger = {
            "step": step,
            "error": str(exc)[:2000],
            "checks": [c.model_dump(mode="json") for c in gate.failures] if gate else [],
        }
        self.safely(EventKind.TRIGGER, trigger)
        if rollback is not None:
            self.safely(EventKind.RESTORED, rollback)
        if interrupted:
            outcome = Outcome.INTERRUPTED
        elif moved:
            outcome = Outcome.ROLLED_BACK
        elif gate is not None:
            outcome = Outcome.BLOCKED
        else:
            outcome = Outcome.FAILED
        summary = f"{outcome.value} at {step}"
        if self.run.inconclusive and gate is not None and gate.gate == "bake":
            # Not a failure of the canary, not a pass either: too little traffic to judge it.
            summary += f" ({self.run.inconclusive})"
        if rollback is not None:
            summary += f"; rollback {rollback['result']}"
        r = self.record
        if r.schema_after and r.schema_after != r.schema_before:
            self.safely(
                EventKind.NOTE,
                {
                    "text": f"migrations {r.schema_before} → {r.schema_after} stay applied "
                    "(expand/contract: they are not rolled back)"
                },
            )
        self.finish(outcome, summary)

    def safely(self, kind: EventKind, data: dict[str, Any]) -> None:
        """Record while stopping: the ledger being away must not stop the rest of the stop."""
        try:
            self.run.emit(kind, data)
        except GangwayError as exc:
            self.log.error("could not record %s: %s", kind.value, exc.render())

    def finish(self, outcome: Outcome, message: str) -> None:
        """Record the outcome and publish the record as a Prefect artifact."""
        self.run.emit(EventKind.FINISHED, {"outcome": outcome.value, "message": message})
        _publish(self.record)


def _publish(record: DeployRecord) -> None:
    if prefect_task.api_lost() is not None:
        return  # each call would wait for Prefect's retries, then fail the same way
    try:
        create_markdown_artifact(
            key=f"{record.env}-deploy-record",
            markdown=record_markdown(record),
            description=record.message,
        )
    except Exception as exc:  # the ledger is the record; Prefect's copy is a view
        get_run_logger().warning("deploy record artifact not published: %s", exc)
