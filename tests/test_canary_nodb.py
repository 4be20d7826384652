"""The canary-versus-stable comparison holds for a service of the other shape: one function,
no database, no bucket (the shape of tests/service_repo.py), deployed with --project.

With no database to count in, the deterministic error injection counts in this test's own
process: a loopback HTTP counter (function containers share the host network), one atomic
increment per invoke under a lock, so every k-th invoke of a version fails whichever execution
environment serves it, warm or cold, one at a time or concurrently.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from service_repo import DEV_TOML, DOCKERFILE, SERVICE, SERVICE_TOML, _git, explain, gangway

from gangway.config import load_config
from gangway.record import Outcome
from tasks import lambda_read

pytestmark = pytest.mark.stack

NAME = "gw-odds"  # its own functions: nothing else on the stack deploys them
KEY = "echo"
DEPLOY = "GANGWAY_ENVIRONMENT__DEPLOY__"

# Every k-th invoke of the version fails; its first (the smoke test) neither fails nor counts.
FAILING_APP = """\
import json
import os
import urllib.request


def handler(event, context):
    version = {tag!r} + ":" + os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "?")
    with urllib.request.urlopen({url!r} + version, timeout=10) as answer:
        n = int(answer.read())
    if n > 1 and (n - 1) % {k} == 0:
        raise RuntimeError(f"injected failure: invoke {{n}} of {{version}} (1 in {k})")
    return {{"statusCode": 200, "body": json.dumps({{"echo": event, "ok": True}})}}
"""
HEALTHY_APP = """\
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"echo": event, "ok": True})}
"""


class Counter(ThreadingHTTPServer):
    """GET /<key> → the key's next count (1, 2, ...), atomically."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Count)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def next(self, key: str) -> int:
        """Count one more invoke of key."""
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    @property
    def url(self) -> str:
        """Where the functions ask."""
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Count(BaseHTTPRequestHandler):
    server: Counter

    def do_GET(self) -> None:  # the name http.server calls
        body = str(self.server.next(self.path.lstrip("/"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per invoke would drown the test's output


@pytest.fixture
def counter() -> Iterator[Counter]:
    """The shared invoke counter, served on loopback for the test's duration."""
    server = Counter()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def odds(stack: object, tmp_path: Path) -> Iterator[Path]:
    """A one-function, database-less service of its own, seeded; healthy again afterwards."""
    repo = tmp_path / "odds"
    (repo / "src").mkdir(parents=True)
    (repo / "deployments").mkdir()
    (repo / "src" / "Dockerfile").write_text(DOCKERFILE)
    (repo / "src" / "app.py").write_text(HEALTHY_APP)
    (repo / "deployments" / "service.toml").write_text(SERVICE_TOML.replace(SERVICE, NAME))
    (repo / "deployments" / "dev.toml").write_text(DEV_TOML)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "odds service")
    seeded = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert seeded.returncode == 0, explain(seeded)
    yield repo
    # Its variants ask a counter that is gone now: leave the healthy handler live.
    _commit(repo, HEALTHY_APP + f"\n# healthy again {uuid.uuid4().hex}\n")
    done = gangway("deploy", "--project", str(repo), "--env", "dev")
    assert done.returncode == 0, explain(done)


def _commit(repo: Path, app: str) -> None:
    (repo / "src" / "app.py").write_text(app)
    _git(repo, "commit", "-qam", "variant")


def _failing(counter: Counter, k: int) -> str:
    return FAILING_APP.format(tag=uuid.uuid4().hex[:12], url=counter.url, k=k)


def test_a_canary_twice_as_bad_as_stable_is_rolled_back_without_a_database(
    odds: Path, counter: Counter
) -> None:
    # Stable fails every 4th invoke, the canary every 2nd. One function: one synthetic
    # invoke per round (plus the 0.1 s pause): 0.41 s each with cold starts, 0.16 s with warm
    # environments; 110 s give 265 to 690 invokes, beyond the 130 that make "worse" certain
    # (p < 1e-9 over the random split) at 5 pp and 95 %.
    _commit(odds, _failing(counter, 4))
    stable = gangway("deploy", "--project", str(odds), "--env", "dev", "--json")
    assert stable.returncode == 0, explain(stable)
    config = load_config("dev", project=odds)
    before = lambda_read.describe_functions(config)[KEY].alias.version
    _commit(odds, _failing(counter, 2))
    done = gangway(
        "deploy", "--project", str(odds), "--env", "dev", "--json",
        "--canary", "50", "--bake", "110",
        env={DEPLOY + "ERROR_RATE_THRESHOLD": "1.0", DEPLOY + "BAKE_INVOKE_INTERVAL_S": "0.1"},
    )
    assert done.returncode == 1, explain(done)
    record = json.loads(done.stdout)
    assert record["outcome"] == Outcome.ROLLED_BACK.value, record["message"]
    assert record["trigger"]["step"] == "bake"
    bake = next(g for g in record["gates"] if g["gate"] == "bake")
    failed = [c for c in bake["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["canary vs stable error rate"], failed
    evidence = failed[0]["evidence"]
    canary, old = evidence["canary"], evidence["stable"]
    assert canary["errors"] == canary["invocations"] // 2, evidence
    assert old["errors"] == old["invocations"] // 4 and old["invocations"] > 0, evidence
    assert evidence["decision"] == "worse" and evidence["lower_bound"] > 0.05, evidence
    assert lambda_read.describe_functions(config)[KEY].alias.version == before
    print(f"\n{failed[0]['found']}")
