"""Switching the scheduled reconcilers off and on, for tests that must not race them.

The test suite pauses every ``reconcile-<env>`` deployment for the session (a kill-then-rerun
row asserts that the *next deploy* recovers, which a reconciler would do first); a reconciler
row resumes its environment's for the row, pointing its flow runs at the test's ledger.
"""

from __future__ import annotations

from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.exceptions import ObjectNotFound

from gangway.errors import StackError


def deployment_name(env: str) -> str:
    """The reconciler's deployment, as ``flow/deployment``."""
    return f"reconcile/reconcile-{env}"


def pause(envs: list[str]) -> list[str]:
    """Pause the reconcilers of envs (Prefect deletes their scheduled runs); returns those
    that exist."""
    paused = []
    with get_client(sync_client=True) as client:
        for env in envs:
            try:
                found = client.read_deployment_by_name(deployment_name(env))
            except ObjectNotFound:
                continue
            client.pause_deployment(found.id)
            paused.append(deployment_name(env))
    return paused


def resume(env: str, flow_env: dict[str, str]) -> dict[str, Any]:
    """Resume env's reconciler with flow_env added to its flow runs' environment, and have the
    server schedule its runs now; returns the job variables it had (for ``pause_again``)."""
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment_name(env))
        except ObjectNotFound as exc:
            raise StackError(
                f"the deployment {deployment_name(env)} is not registered",
                expected="the deployments of prefect.yaml on the stack's Prefect server",
                found="no such deployment",
                remedy="run `gangway stack up` (it registers them and starts the worker)",
            ) from exc
        before = dict(found.job_variables or {})
        variables = {**before, "env": {**before.get("env", {}), **flow_env}}
        client.update_deployment(found.id, DeploymentUpdate(job_variables=variables))
        client.resume_deployment(found.id)
        # The scheduler service would get there within its loop (60 s); a stranded alias
        # should not wait for it.
        client.request("POST", "/deployments/{id}/schedule", path_params={"id": found.id},
                       json={})
    return before


def pause_again(env: str, job_variables: dict[str, Any]) -> None:
    """Pause env's reconciler and give it back the job variables ``resume`` replaced."""
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment_name(env))
        client.pause_deployment(found.id)
        client.update_deployment(found.id, DeploymentUpdate(job_variables=job_variables))

