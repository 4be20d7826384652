"""The fault matrix: every boundary violation injected for real, caught and explained.

Each test injects one real condition on the rehearsal stack (a broken image, a closed port,
an IAM policy, a killed process...), runs a real deploy, and hands the attempt to one of the
``fault`` fixture's verdicts (``blocked``, ``rolled_back``, ``refused``, ``recovered``).
A verdict observes the world from outside gangway first: the aliases read back from AWS, the
ledger record re-read from the store, the user-visible error and output scanned for secrets.
It keeps what it saw as the row's pending result and asserts. The row itself is written only
when the whole test has finished (``pytest_runtest_makereport`` below): it is contained only
if the verdict held, the verdict found no problem and every phase of the test passed. The
session declares its rows at collection, so a row that is skipped, crashes in setup or never
writes counts against the result. Traffic that an attempt left moved after it ended (until a
later deploy or the reconciler put it back) is reported as ``stranded_s``; within
STRANDED_LIMIT_S the row can be contained, beyond it the row is *stranded*, never contained.

``GANGWAY_FAULTS_ENV`` picks the environment (default qa, which no test outside the matrix's
lane touches, so the matrix runs beside the rest of the suite: tests/conftest.py).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alias_reads import settle

from flows.deploy import DeployFailed, deploy
from gangway.config import REPO_ROOT, DeployConfig, load_config
from gangway.errors import AwsError, GangwayError
from gangway.interrupts import Terminated
from gangway.record import DeployRecord, Outcome
from rehearsal import fault_matrix, iam
from rehearsal.fault_matrix import STRANDED, STRANDED_LIMIT_S, FaultRow
from rehearsal.mariadb_setup import AWS_TEST_ENV, read_stack_env, stack_env_path
from rehearsal.pytest_matrix import DECLARED
from tasks import lambda_alias, lambda_read, schema
from tasks.ledger import Ledger
from tasks.source import source_revision

FAULTS_ENV = os.environ.get("GANGWAY_FAULTS_ENV", "qa")
TRACEBACK = "Traceback (most recent call last)"
TERMINAL = {
    Outcome.SUCCEEDED,
    Outcome.BLOCKED,
    Outcome.ROLLED_BACK,
    Outcome.FAILED,
    Outcome.INTERRUPTED,
    Outcome.REFUSED,
}

pytestmark = pytest.mark.stack


# ------------------------------------------------------------------------ reading the world
Aliases = dict[str, tuple[str, dict[str, float]]]


def read_aliases(config: DeployConfig) -> Aliases:
    """Where every function's alias points, and its canary weights, read from AWS (after the
    stale-read window of the last write: a verdict judges the settled state, as a person would)."""
    settle(config)
    out: Aliases = {}
    for key, fn in config.functions.items():
        try:
            state = lambda_read.read_alias(config, fn.name)
        except AwsError as exc:
            if "does not exist" not in exc.message + exc.found:
                raise
            out[key] = ("", {})  # no alias at all (a row may delete one)
            continue
        out[key] = (state.version, dict(state.weights))
    return out


def describe(aliases: Aliases) -> str:
    """A short text of alias targets, e.g. ``v12`` or ``v3..v12``."""
    versions = sorted({v for v, _ in aliases.values() if v}, key=lambda v: (len(v), v))
    text = f"v{versions[0]}" if len(versions) == 1 else f"v{versions[0]}..v{versions[-1]}"
    absent = sorted(k for k, (v, _) in aliases.items() if not v)
    if absent:
        text += f" ({', '.join(absent)}: no alias)"
    if any(w for _, w in aliases.values()):
        text += " (weighted!)"
    return text


# Words that make a function env key secret-bearing for the sweep. Deliberately wider than
# gangway's scrubber (gangway/redact.py, DeployConfig.secret_values): the sweep checks the
# scrubber, so it must not share its list.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PRIVATE", "AUTH")
SHORTEST_SECRET = 8  # shorter values would match ordinary prose


def known_secrets(config: DeployConfig | None = None) -> list[str]:
    """Every secret value in play, gathered without gangway's scrubber.

    Every generated value in the stack's secrets file (all environments: database passwords,
    function secrets, the AWS secret key), every function env value resolved from a variable
    or under a secret-sounding key, and the secret key of every IAM user the rehearsal issued.
    """
    stack = read_stack_env(stack_env_path())
    settings = {k for k in stack if k.startswith("PREFECT_")} | (
        set(AWS_TEST_ENV) - {"AWS_SECRET_ACCESS_KEY"}
    )
    values = {v for k, v in stack.items() if k not in settings}
    values.add(os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    values.update(iam.issued_secret_keys())
    config = config or load_config(FAULTS_ENV)
    values.add(config.db_password.get_secret_value())
    for fn in config.functions.values():
        for key, raw in fn.spec.env.items():
            if "${" in raw or any(word in key.upper() for word in SECRET_WORDS):
                values.add(fn.env[key].get_secret_value())
    return sorted((v for v in values if len(v) >= SHORTEST_SECRET), key=len, reverse=True)


def count_secrets(texts: list[str], secrets: list[str]) -> int:
    """How many (text, secret) pairs leak."""
    return sum(secret in text for text in texts for secret in secrets)


# ----------------------------------------------------------------------------- an attempt
@dataclass
class Attempt:
    """One deploy as the user saw it: the record(s) it left, its error and output."""

    records: list[DeployRecord]
    error: str
    output: str
    exit_code: int | None
    seconds: float
    result: Any = None
    started: float = 0.0  # time.monotonic() when the attempt began

    @property
    def record(self) -> DeployRecord | None:
        """The attempt's own record (the newest one it left)."""
        return self.records[-1] if self.records else None


@dataclass
class FaultRun:
    """One row of the matrix: inject, run, and judge against the world read back."""

    description: str
    group: str
    test: str
    capture: pytest.CaptureFixture[str]
    # The environment the row deploys (FAULTS_ENV; the promotion rows' source is their own).
    env: str = FAULTS_ENV
    config: DeployConfig = field(init=False)
    before: Aliases = field(init=False)
    known: set[str] = field(init=False)
    # The verdict's row, written with the test's final outcome when the test has finished.
    pending: FaultRow | None = None
    # (time.monotonic() and time.time() when an attempt ended, the aliases read back then)
    ends: list[tuple[float, float, Aliases]] = field(default_factory=list)
    # Environments a command of the row named besides its own (a promotion's target).
    targets: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.config = load_config(self.env)
        self.before = read_aliases(self.config)
        self.known = self._ledger_ids()

    def rebaseline(self) -> None:
        """Re-read the aliases after an injection that changed them on purpose."""
        self.before = read_aliases(self.config)
        self.ends.clear()

    def ended(self) -> None:
        """An attempt just ended: note where traffic was left (a later action may move it)."""
        self.ends.append((time.monotonic(), time.time(), read_aliases(self.config)))

    def stranded_for(self, attempt: Attempt) -> float | None:
        """Seconds traffic stayed off `before` after an earlier attempt ended: until this
        attempt's recovery put it back (the time its ledger records), else until it began."""
        for ended_at, ended_wall, aliases in self.ends:
            if ended_at <= attempt.started and aliases != self.before:
                # Re-read: a row may hold a copy of a record from before recovery closed it.
                rollbacks = [
                    (stored.rollback or {})
                    for r in attempt.records
                    if (stored := Ledger().get(r.deploy_id)) is not None
                ]
                restored = [
                    datetime.fromisoformat(rb["at"]).timestamp()
                    for rb in rollbacks
                    if rb.get("by") == "recovery" and "at" in rb
                ]
                if restored:
                    return max(restored) - ended_wall
                return attempt.started - ended_at
        return None

    # -- running -------------------------------------------------------------------------
    @staticmethod
    def _ledger_ids() -> set[str]:
        return set(Ledger().deploy_ids())

    def new_records(self) -> list[DeployRecord]:
        """Records that appeared in the ledger since the row started, oldest first: the
        service's, in the environments the row acts on (the rest of the suite deploys to
        other environments meanwhile)."""
        ledger = Ledger()
        fresh = [ledger.get(i) for i in ledger.deploy_ids() if i not in self.known]
        mine = {self.env, self.config.environment.name, *self.targets}
        return sorted(
            (
                r
                for r in fresh
                if r is not None
                # A refusal of unreadable configuration knows no service.
                and r.service in (self.config.service.name, "")
                and r.env in mine
            ),
            key=lambda r: r.started_at,
        )

    def deploy(self, env: str | None = None, **kwargs: Any) -> Attempt:
        """Run the deploy flow in this process, as `gangway deploy` would."""
        self.capture.readouterr()
        started = time.monotonic()
        error, result = "", None
        try:
            result = deploy(env=env or self.env, **kwargs)
        except DeployFailed as exc:
            error = exc.render()
        except GangwayError as exc:
            error = exc.render()
        except (KeyboardInterrupt, Terminated) as exc:  # what the CLI turns into 130 / 143
            error = f"interrupted ({type(exc).__name__})"
        seconds = time.monotonic() - started
        self.ended()
        captured = self.capture.readouterr()
        return Attempt(
            records=self.new_records(),
            error=error,
            output=captured.out + captured.err,
            exit_code=None,
            seconds=seconds,
            result=result,
            started=started,
        )

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Attempt:
        """Run ``gangway <args>`` as a user would, in its own process."""
        for flag in ("--env", "--to"):
            if flag in args[:-1]:
                self.targets.add(args[args.index(flag) + 1])
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
        )
        self.ended()
        return Attempt(
            records=self.new_records(),
            error=done.stderr,
            output=done.stdout + done.stderr,
            exit_code=done.returncode,
            seconds=time.monotonic() - started,
            started=started,
        )

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> Spawned:
        """Start ``gangway <args>`` in the background (to kill or interrupt it mid-flow)."""
        return Spawned(self, list(args), env or {})

    # -- verdicts ------------------------------------------------------------------------
    def blocked(
        self,
        attempt: Attempt,
        *,
        step: str,
        boundary: str,
        says: tuple[str, ...] = (),
    ) -> DeployRecord:
        """Stopped before traffic: nothing moved, the alias reads back where it was."""
        return self._judge(attempt, "blocked before traffic", step, boundary, says)

    def rolled_back(
        self,
        attempt: Attempt,
        *,
        step: str,
        boundary: str,
        says: tuple[str, ...] = (),
    ) -> DeployRecord:
        """Caught after traffic moved: every alias restored and read back on its old version."""
        return self._judge(attempt, "rolled back", step, boundary, says)

    def refused(
        self,
        attempt: Attempt,
        *,
        boundary: str = "config",
        says: tuple[str, ...] = (),
        step: str = "input",
    ) -> DeployRecord:
        """Bad input refused before any side effect, with a REFUSED record of the attempt."""
        return self._judge(attempt, "refused", step, boundary, says)

    def recovered(
        self,
        attempt: Attempt,
        *,
        caught_at: str,
        boundary: str,
        says: tuple[str, ...] = (),
        evidence: str = "",
    ) -> DeployRecord:
        """A transient fault absorbed (retried / re-run): the deploy succeeded and verified."""
        return self._judge(attempt, "recovered", caught_at, boundary, says, evidence=evidence)

    def reconciled(
        self,
        attempt: Attempt,
        *,
        by: str = "reconciler",
        boundary: str = "orchestration",
        says: tuple[str, ...] = (),
    ) -> DeployRecord:
        """A killed deploy closed with no further deploy: the scheduled reconciler put every
        moved alias back (read back on its old version) and closed the record interrupted."""
        return self._judge(attempt, "restored by the reconciler", by, boundary, says)

    def _judge(
        self,
        attempt: Attempt,
        verdict: str,
        step: str,
        boundary: str,
        says: tuple[str, ...],
        evidence: str = "",
    ) -> DeployRecord:
        assert self.pending is None, "one verdict per row: split the test into two rows"
        problems: list[str] = []
        record = attempt.record
        stored = Ledger().get(record.deploy_id) if record else None
        after = read_aliases(self.config)
        consistent = stored is not None
        if stored is None:
            problems.append("no ledger record of the attempt")
        elif stored.outcome not in TERMINAL:
            consistent = False
            problems.append(f"ledger record left {stored.outcome}")
        for earlier in attempt.records[:-1]:
            again = Ledger().get(earlier.deploy_id)
            if again is None or again.outcome not in TERMINAL:
                consistent = False
                problems.append(f"earlier record {earlier.deploy_id} left unfinished")

        trigger = (stored.trigger or {}) if stored else {}
        shown = "\n".join([attempt.error, str(trigger.get("error", "")), *_check_texts(trigger)])
        if verdict == "recovered":
            outcome_ok = stored is not None and stored.outcome is Outcome.SUCCEEDED
            moved = {k: m.version_after for k, m in stored.functions.items()} if stored else {}
            alias_ok = outcome_ok and all(
                after[k][0] == v and not after[k][1] for k, v in moved.items()
            )
            caught = step
            if evidence:
                shown += "\n" + evidence
            alias_text = (
                f"this deploy's {describe(after)}, read back" if alias_ok else describe(after)
            )
        elif verdict == "restored by the reconciler":
            # The process died: nobody saw an error. The record and the aliases are the proof.
            outcome_ok = stored is not None and stored.outcome is Outcome.INTERRUPTED
            alias_ok = after == self.before
            caught = str(((stored.rollback or {}) if stored else {}).get("actor", "?"))
            shown += "\n" + (stored.message if stored else "")
            alias_text = f"previous {describe(after)}, read back" if alias_ok else describe(after)
            if caught != step:
                problems.append(f"closed by {caught!r}, expected {step!r}")
            if stored is not None:
                problems.extend(_consistency(stored, "rolled back"))
                consistent = consistent and not _consistency(stored, "rolled back")
        else:
            wanted = {
                "blocked before traffic": (Outcome.BLOCKED, Outcome.FAILED),
                "rolled back": (Outcome.ROLLED_BACK, Outcome.INTERRUPTED),
                "refused": (Outcome.REFUSED,),
            }[verdict]
            outcome_ok = stored is not None and stored.outcome in wanted
            alias_ok = after == self.before
            caught = str(trigger.get("step", "?"))
            alias_text = f"previous {describe(after)}, read back" if alias_ok else describe(after)
            if caught != step:
                problems.append(f"caught at {caught!r}, expected {step!r}")
            if stored is not None:
                problems.extend(_consistency(stored, verdict))
                consistent = consistent and not _consistency(stored, verdict)
            for part in (f"[{boundary}]", "expected", "found", "remedy"):
                if part not in shown:
                    problems.append(f"the error does not say {part!r}")
        if not outcome_ok:
            problems.append(f"outcome {stored.outcome if stored else None}, expected {verdict}")
        if not alias_ok:
            problems.append(f"aliases {after} != expected (before: {self.before})")
        problems.extend(f"the error does not mention {s!r}" for s in says if s not in shown)
        if TRACEBACK in attempt.error or (
            attempt.exit_code is not None and TRACEBACK in attempt.output
        ):
            problems.append("a bare traceback reached the user")
        texts = [attempt.error, attempt.output, *(r.model_dump_json() for r in attempt.records)]
        leaks = count_secrets(texts, known_secrets(self.config))
        if leaks:
            problems.append(f"{leaks} secret value(s) in the output or the ledger record")
        # Traffic an earlier attempt left moved until this one put it back is stranded: the
        # world was wrong until somebody acted, whatever this attempt then repaired.
        # Within STRANDED_LIMIT_S (what an unattended reconciler guarantees) it is contained.
        stranded_s = self.stranded_for(attempt)
        within = stranded_s is not None and stranded_s <= STRANDED_LIMIT_S
        if not outcome_ok:
            shown_outcome = str(stored.outcome if stored else "no record")
        elif within:
            shown_outcome = f"moved {stranded_s:.0f}s (limit {STRANDED_LIMIT_S:.0f}s), {verdict}"
        elif stranded_s is not None:
            shown_outcome = f"{STRANDED}, then {verdict}"
        else:
            shown_outcome = verdict
        row = FaultRow(
            fault=self.description,
            group=self.group,
            boundary=boundary,
            caught_at=caught,
            outcome=shown_outcome,
            alias_after=alias_text,
            ledger=(
                f"{stored.outcome} {stored.deploy_id[:8]}"
                + (f" (+{len(attempt.records) - 1})" if len(attempt.records) > 1 else "")
                if stored
                else "MISSING"
            ),
            seconds=round(attempt.seconds, 1),
            contained=outcome_ok
            and alias_ok
            and not problems
            and (stranded_s is None or stranded_s <= STRANDED_LIMIT_S),
            record_consistent=consistent,
            stranded_s=None if stranded_s is None else round(stranded_s, 1),
            secrets_found=leaks,
            test=self.test,
            problems=problems,
        )
        self.pending = row
        assert not problems, "\n".join(problems) + f"\n--- error shown ---\n{shown[-3000:]}"
        assert stored is not None
        return stored


class Spawned:
    """A background ``gangway`` process, watched through the ledger it writes."""

    def __init__(self, run: FaultRun, args: list[str], env: dict[str, str]) -> None:
        self.run = run
        self.started = time.monotonic()
        self.out = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
        )

    def wait_for_step(self, step: str, timeout: float = 300) -> DeployRecord:
        """Block until the process's ledger record shows step finished; return that record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.run.new_records():
                if any(s.name == step for s in record.steps):
                    return record
            if self.process.poll() is not None:
                raise AssertionError(f"the deploy ended before {step!r}:\n{self.output()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"no {step!r} within {timeout}s:\n{self.output()[-3000:]}")

    def signal(self, signum: int) -> None:
        """Send signum to the deploy process."""
        os.kill(self.process.pid, signum)

    def output(self) -> str:
        """Everything the process printed so far."""
        self.out.seek(0)
        return self.out.read()

    def finish(self, timeout: float = 300) -> Attempt:
        """Wait for the process to end; the attempt as the user saw it."""
        code = self.process.wait(timeout=timeout)
        self.run.ended()
        text = self.output()
        self.out.close()
        return Attempt(
            records=self.run.new_records(),
            error=text,
            output=text,
            exit_code=code,
            seconds=time.monotonic() - self.started,
            started=self.started,
        )


def _check_texts(trigger: dict[str, Any]) -> list[str]:
    return [
        " ".join(str(c.get(k, "")) for k in ("name", "expected", "found", "remedy"))
        for c in trigger.get("checks", [])
    ]


def _consistency(record: DeployRecord, verdict: str) -> list[str]:
    """The record agrees with itself: what moved was put back and says so."""
    moved = [m for m in record.functions.values() if m.alias_moved]
    if verdict in ("blocked before traffic", "refused"):
        problems = [f"{m.name} recorded as moved" for m in moved]
        if record.rollback is not None:
            problems.append("a rollback is recorded for a deploy that moved nothing")
        return problems
    problems = []
    if not moved:
        problems.append("rolled back, but no alias is recorded as moved")
    if not record.rollback or record.rollback.get("result") != "verified":
        problems.append(f"rollback not verified: {record.rollback}")
    for m in moved:
        if not m.restore_verified or m.restored_to != m.version_before:
            problems.append(f"{m.name}: restored to {m.restored_to}, was {m.version_before}")
    return problems


# ------------------------------------------------------------------------------- fixtures
RUN = pytest.StashKey[FaultRun]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture(scope="session")
def matrix_started(stack: object) -> float:
    """The time this session's matrix started (the rows were declared at collection)."""
    return time.time()


@pytest.fixture
def row_env() -> str:
    """The environment a row deploys (a module that needs another overrides this)."""
    return FAULTS_ENV


def _deploy_healthy(env: str) -> DeployRecord:
    schema.upgrade(load_config(env))
    record = deploy(env=env)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    return record


def _deploy_validated_head(env: str) -> DeployRecord:
    head = source_revision(REPO_ROOT, []).sha
    found = [
        r
        for r in Ledger().by_sha(head)
        if r.outcome is Outcome.SUCCEEDED and r.image_digest and not r.dirty and r.env == env
    ]
    if found:
        return found[0]
    record = deploy(env=env, sha=head)
    assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
    return record


@pytest.fixture(scope="session")
def once_per_env(matrix_started: float) -> Callable[..., DeployRecord]:
    """Run a setup deploy once per environment and session, then hand back its record."""
    done: dict[tuple[str, str], DeployRecord] = {}

    def once(setup: Callable[[str], DeployRecord], env: str) -> DeployRecord:
        if (setup.__name__, env) not in done:
            done[setup.__name__, env] = setup(env)
        return done[setup.__name__, env]

    return once


@pytest.fixture
def healthy(once_per_env: Callable[..., DeployRecord], row_env: str) -> DeployRecord:
    """One successful deploy of the row's environment first, so every row starts from a
    healthy alias (once per environment and session)."""
    return once_per_env(_deploy_healthy, row_env)


@pytest.fixture
def validated_head(
    once_per_env: Callable[..., DeployRecord], row_env: str, healthy: DeployRecord
) -> DeployRecord:
    """A succeeded deploy of HEAD from a clean checkout to the row's environment: an image
    promotion can name."""
    return once_per_env(_deploy_validated_head, row_env)


def _marker(item: pytest.Item) -> pytest.Mark | None:
    return item.get_closest_marker("fault")


@pytest.fixture
def fault(
    request: pytest.FixtureRequest,
    healthy: DeployRecord,
    capfd: pytest.CaptureFixture[str],
    row_env: str,
) -> Iterator[FaultRun]:
    """The row under test: inject, then ``fault.deploy()`` and one verdict."""
    marker = _marker(request.node)
    assert marker is not None, "a fault test needs @pytest.mark.fault(description, group=...)"
    run = FaultRun(
        description=str(marker.args[0]),
        group=str(marker.kwargs.get("group", "")),
        test=request.node.nodeid,
        capture=capfd,
        env=row_env,
    )
    request.node.stash[RUN] = run
    yield run
    # Leave the next row a healthy world even when this one failed: put aliases back.
    now = read_aliases(run.config)
    if now != run.before:
        for key, (version, _weights) in run.before.items():
            if not version or now.get(key, ("", {}))[0] == "":
                continue
            fn = run.config.functions[key]
            lambda_alias.restore_alias(
                run.config,
                fn.name,
                lambda_read.AliasState(
                    name=run.config.environment.alias, version=version, weights={}
                ),
            )


def _first_line(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[-1])[:200]
    text = str(report.longrepr or "")
    errors = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("E ")]
    lines = errors or [line for line in text.splitlines() if line.strip()] or [""]
    return lines[0 if errors else -1].strip()[:200]


def final_row(item: pytest.Item, reports: dict[str, pytest.TestReport]) -> FaultRow:
    """The row as it counts: the verdict's row, contained only if every phase passed."""
    marker = _marker(item)
    assert marker is not None
    run = item.stash.get(RUN, None)
    return fault_matrix.settle(
        run.pending if run else None,
        {
            when: (r.outcome, _first_line(r) if r.outcome != "passed" else "")
            for when, r in reports.items()
        },
        fault=str(marker.args[0]),
        group=str(marker.kwargs.get("group", "")),
        test=item.nodeid,
        alias_after=_aliases_text(run),
    )


def _aliases_text(run: FaultRun | None) -> str:
    # Called from a pytest hook: an AWS that does not answer must not crash the session.
    if run is None:
        return "?"
    try:
        return describe(read_aliases(run.config))
    except GangwayError as exc:
        return f"unreadable: {exc.message[:80]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Write a fault row once its test has finished, with the outcome of every phase."""
    report: pytest.TestReport = yield
    if _marker(item) is None:
        return report
    reports = item.stash.setdefault(REPORTS, {})
    reports[report.when] = report
    if report.when == "teardown":
        fault_matrix.append(final_row(item, reports))
    return report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Declare the rows this session will run (after -k/-m deselection), before any runs."""
    rows = {item.nodeid: str(m.args[0]) for item in items if (m := _marker(item)) is not None}
    if rows:
        fault_matrix.declare(rows)
        config.stash[DECLARED] = rows


@pytest.fixture
def variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Build the next deploy from the committed Dockerfile plus extra steps."""

    def use(*steps: str) -> None:
        original = (REPO_ROOT / "service" / "Dockerfile").read_text()
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(original + "\n" + "\n".join(steps) + "\n")
        monkeypatch.setenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", str(dockerfile))

    return use


@pytest.fixture
def new_image(variant: Callable[..., None]) -> None:
    """A digest never deployed before, so the deploy must update code and publish versions
    (a version already running a digest is reused, and would skip those calls)."""
    variant(f"LABEL dev.gangway.fault-row={uuid.uuid4().hex}")


def append_python(module: str, code: str) -> str:
    """A Dockerfile step appending code to a handler module inside the image."""
    encoded = base64.b64encode(textwrap.dedent(code).encode()).decode()
    return f"RUN echo {encoded} | base64 -d >> ${{LAMBDA_TASK_ROOT}}/app/{module}.py"


def replace_text(module: str, old: str, new: str) -> str:
    """A Dockerfile step replacing ``old`` by ``new`` in a handler module inside the image.

    The step fails the build unless ``old`` occurs exactly once: a sabotage that silently did
    not apply would let the row pass against the unchanged reference image.
    """
    script = (
        "import pathlib\n"
        f"p = pathlib.Path('/var/task/app/{module}.py')\n"
        f"old, new = {old!r}, {new!r}\n"
        "t = p.read_text()\n"
        "assert t.count(old) == 1, ('variant: not exactly one occurrence', old, str(p))\n"
        "p.write_text(t.replace(old, new))\n"
    )
    encoded = base64.b64encode(script.encode()).decode()
    return f"RUN echo {encoded} | base64 -d | python3"


@pytest.fixture
def migrations_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of migrations/ the next deploy uses (so a test can add or remove revisions)."""
    target = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", target)
    monkeypatch.setenv("GANGWAY_SERVICE__MIGRATIONS", str(target))
    return target


def add_revision_0003(migrations: Path, doc: str, *upgrade: str) -> None:
    """Write revision 0003 (after 0002) whose upgrade runs the given alembic operations."""
    body = "\n".join(f"    {line}" for line in upgrade)
    (migrations / "versions" / "0003_test.py").write_text(
        f'"""{doc}"""\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n\n'
        f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )
