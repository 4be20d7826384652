"""The Prefect side of the rehearsal that runs flows without a person: pool, deployments, worker.

``gangway stack up`` creates the process work pool ``gangway``, registers the deployments of
prefect.yaml (the deploys and the per-environment reconcilers) and starts one process worker,
so a flow run of a deployment, and every scheduled reconcile, runs against this stack. In
production the user runs the worker, as Prefect documents; its environment is what the flows
read (GANGWAY_HOME, GANGWAY_LEDGER_URL, the AWS credentials).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from gangway.config import REPO_ROOT, gangway_home
from gangway.errors import StackError
from rehearsal import system

POOL = "gangway"
WORKER = "prefect-worker"  # its pid file and log under GANGWAY_HOME
WORKER_NAME = "gangway-rehearsal"  # the name the worker reports to the Prefect server
# How often the worker asks for due flow runs (Prefect's default is 10 s): a stranded alias
# waits for the reconciler's schedule plus this.
QUERY_SECONDS = 5
# A worker heartbeats every 30 s; one not heard from for longer than this is gone.
HEARTBEAT_STALE_S = 90


def _api() -> str:
    return system.prefect_env()["PREFECT_API_URL"]


def _request(method: str, path: str, body: object | None = None) -> httpx.Response:
    try:
        return httpx.request(method, f"{_api()}{path}", json=body, timeout=10, trust_env=False)
    except httpx.HTTPError as exc:
        raise StackError(
            f"the Prefect server did not answer {method} {path}",
            expected=f"the Prefect API at {_api()}",
            found=f"{type(exc).__name__}: {exc}",
            remedy=f"read {system.log_path('prefect')} and run `up` again",
        ) from exc


def ensure_work_pool() -> str:
    """Create the process work pool ``gangway`` unless it exists; 'created' or 'exists'."""
    found = _request("GET", f"/work_pools/{POOL}")
    if found.status_code == 200:
        kind = found.json().get("type")
        if kind != "process":
            raise StackError(
                f"the work pool {POOL!r} is not a process pool",
                expected="type process (the rehearsal's worker runs flows as local processes)",
                found=f"type {kind}",
                remedy=f"delete it (prefect work-pool delete {POOL}) and run `up` again",
            )
        return "exists"
    from prefect.workers.process import ProcessWorker

    created = _request(
        "POST",
        "/work_pools/",
        {
            "name": POOL,
            "type": "process",
            "base_job_template": ProcessWorker.get_default_base_job_template(),
        },
    )
    # 409: another `up` created it in between, which is what we wanted.
    if created.status_code not in (200, 201, 409):
        raise StackError(
            f"creating the work pool {POOL!r} failed",
            expected="201 from POST /work_pools/",
            found=f"{created.status_code}: {created.text[:300]}",
            remedy=f"read {system.log_path('prefect')}",
        )
    return "created"


def deployment_names() -> list[str]:
    """``flow/deployment`` for every deployment prefect.yaml declares."""
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    # gangway's flows are named as Prefect names them by default: the function, with hyphens.
    return [
        f"{d['entrypoint'].rsplit(':', 1)[1].replace('_', '-')}/{d['name']}"
        for d in spec["deployments"]
    ]


def _deployment_exists(name: str) -> bool:
    return _request("GET", f"/deployments/name/{name}").status_code == 200


def _marker(home: Path | None) -> Path:
    return system.home_dir("run", home) / "deployments.json"


def flow_env(home: Path | None = None) -> dict[str, str]:
    """The environment flow runs of the worker get: the caller's, this stack's Prefect API,
    GANGWAY_HOME and GANGWAY_REPO (the checkout the flows run from)."""
    return {
        **os.environ,
        **system.prefect_env(home),
        "GANGWAY_HOME": str(home or gangway_home()),
        "GANGWAY_REPO": str(REPO_ROOT),
    }


def register_deployments(home: Path | None = None, *, force: bool = False) -> str:
    """``prefect deploy --all`` from the repository unless this prefect.yaml is registered
    already from this checkout on this server; returns what it did."""
    names = deployment_names()
    wanted = {
        "prefect.yaml": hashlib.sha256((REPO_ROOT / "prefect.yaml").read_bytes()).hexdigest(),
        "repo": str(REPO_ROOT),
        "api": _api(),
    }
    marker = _marker(home)
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        done = None
    if not force and done == wanted and all(_deployment_exists(n) for n in names):
        return f"current: {len(names)} deployments"
    log = system.log_path("prefect-deploy", home)
    # prefect.yaml's nightly drift schedule takes its timezone from this setting (issue 15).
    env = {"GANGWAY_DRIFT_TIMEZONE": "UTC", **flow_env(home), "PREFECT_CLI_PROMPT": "false"}
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} gangway runs prefect deploy\n"
                  .encode())
        out.flush()
        result = subprocess.run(
            [system.prefect_executable(), "deploy", "--all"],
            cwd=REPO_ROOT, env=system.daemon_env(env), stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, timeout=300, check=False,
        )
    missing = [n for n in names if not _deployment_exists(n)]
    if result.returncode != 0 or missing:
        raise StackError(
            "registering the deployments of prefect.yaml failed",
            expected=f"{', '.join(names)} on {_api()}",
            found=f"exit {result.returncode}; missing {missing}; last lines of {log}:\n    "
            + system.log_tail(log),
            remedy=f"read {log}; `prefect deploy --all` in {REPO_ROOT} shows the same error",
        )
    marker.write_text(json.dumps(wanted))
    return f"registered {len(names)} deployments"


def _worker_heard_since(since: datetime) -> bool:
    try:
        response = httpx.post(
            f"{_api()}/work_pools/{POOL}/workers/filter", json={}, timeout=5, trust_env=False
        )
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    for worker in response.json():
        beat = worker.get("last_heartbeat_time")
        if worker.get("name") == WORKER_NAME and beat:
            if datetime.fromisoformat(beat.replace("Z", "+00:00")) >= since:
                return True
    return False


def worker_ready() -> bool:
    """True when the rehearsal's worker has polled the server recently."""
    return _worker_heard_since(datetime.now(UTC) - timedelta(seconds=HEARTBEAT_STALE_S))


def _identity(home: Path | None) -> str:
    # The worker runs flows from one checkout against one server with one home: a worker
    # started for another is replaced, never reused.
    key = f"{_api()}|{REPO_ROOT}|{home or gangway_home()}"
    return f"{POOL}@{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def ensure_worker(home: Path | None = None, timeout: float = 60.0) -> system.DaemonResult:
    """Start ``prefect worker start --pool gangway --type process`` unless ours runs; wait
    until the server has heard from it."""
    begun = time.monotonic()
    log = system.log_path(WORKER, home)
    identity = _identity(home)
    ours = system.owned_pid(WORKER, home)
    if ours is not None and system.owned_endpoint(WORKER, home) != identity:
        system.stop_pid(WORKER, ours)
        system.pid_path(WORKER, home).unlink(missing_ok=True)
        ours = None
    if ours is not None:
        system.wait_healthy(WORKER, worker_ready, timeout=timeout, pid=ours, log=log,
                            endpoint=f"pool {POOL}")
        return system.DaemonResult(WORKER, "running", f"pool {POOL}", ours, log,
                                   time.monotonic() - begun)
    started = datetime.now(UTC) - timedelta(seconds=1)
    env = {**flow_env(home), "PREFECT_WORKER_QUERY_SECONDS": str(QUERY_SECONDS)}
    env.pop("PREFECT_API_KEY", None)
    pid = system.spawn(
        WORKER,
        [system.prefect_executable(), "worker", "start", "--pool", POOL, "--type", "process",
         "--name", WORKER_NAME],
        env=env, cwd=REPO_ROOT, home=home,
    )
    system.write_pid(WORKER, pid, home, identity)
    system.wait_healthy(WORKER, lambda: _worker_heard_since(started), timeout=timeout, pid=pid,
                        log=log, endpoint=f"pool {POOL}")
    return system.DaemonResult(WORKER, "started", f"pool {POOL}", pid, log,
                               time.monotonic() - begun)
