"""`gangway gate` as the PR gate: real builds on the rehearsal stack's dockerd, real git
repositories in temporary folders, the CLI in its own process as a CI job runs it.

The JUnit report is validated against the Jenkins xUnit plugin's schema (tests/schemas/
junit-10.xsd) with xmlschema; the registry is read back to prove that no push happened; the
workflows are validated against GitHub's workflow schema (check-jsonschema, offline) and every
`gangway` / `prefect` command they run is checked against the real parsers.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema
import yaml
from dotenv import dotenv_values
from service_repo import DEV_TOML, KEY, SERVICE, _git, explain, gangway, make_service

from cli.gate import append_summary
from cli.main import build_parser
from gangway.config import REPO_ROOT, gangway_home
from gangway.evidence import Check, GateResult, Strength
from gangway.gate_report import TimedGate, junit_xml, summary_markdown
from tasks.registry import RegistryClient

XSD = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "junit-10.xsd")
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SUITE_ATTRS = ("name", "tests", "failures", "errors", "skipped", "time", "timestamp")
GATES = ["build", "in-image import", "config contract", "migration lint"]
DB_PASSWORD_VAR = "GW_GATE_TEST_DB_PASSWORD"

MIGRATION = '''\
"""{message}"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade() -> None:
    {upgrade}


def downgrade() -> None:
    pass
'''


# ------------------------------------------------------------------------------ helpers
def gate(
    repo: Path, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], ET.Element]:
    """`gangway gate --project repo --junit … --json`; the run and its validated report."""
    report = tmp / f"junit-{datetime.now(UTC):%H%M%S%f}.xml"
    done = gangway("gate", "--project", str(repo), "--junit", str(report), "--json", *args, env=env)
    assert report.exists(), explain(done)
    assert "Traceback (most recent call last)" not in done.stderr, explain(done)
    XSD.validate(str(report))
    return done, ET.parse(report).getroot()


def suites(root: ET.Element) -> dict[str, ET.Element]:
    """The report's testsuites by name."""
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def failures(root: ET.Element) -> dict[str, ET.Element]:
    """The failed testcases, by name, each as its <failure> element."""
    found = {}
    for case in root.iter("testcase"):
        failure = case.find("failure")
        if failure is not None:
            found[case.get("name", "")] = failure
    return found


def commit(repo: Path, message: str) -> str:
    """Commit everything in repo; its SHA."""
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


def assert_counts(root: ET.Element) -> None:
    """Every suite complete and its counts those of its testcases; totals add up."""
    total = 0
    for suite in root.findall("testsuite"):
        assert all(suite.get(a) is not None for a in SUITE_ATTRS), suite.attrib
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases)
        assert int(suite.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
        assert int(suite.get("skipped", "-1")) == sum(c.find("skipped") is not None for c in cases)
        assert suite.get("errors") == "0"
        datetime.strptime(suite.get("timestamp", ""), "%Y-%m-%dT%H:%M:%S")
        for case in cases:
            assert case.get("classname") and case.get("name") and case.get("time") is not None
        total += len(cases)
    assert int(root.get("tests", "-1")) == total


def assert_remedied(failure: ET.Element) -> None:
    """A failure says expected, found and remedy, in its message and its text."""
    message, text = failure.get("message", ""), failure.text or ""
    for word in ("expected", "found", "remedy"):
        assert word in message and word in text, (message, text)


@pytest.fixture
def service(stack: object, tmp_path: Path) -> Path:
    """The one-function service (no database, no migrations) in its own repository, on a
    branch `change` off `main`."""
    repo = make_service(tmp_path / "echo")
    _git(repo, "branch", "-M", "main")
    _git(repo, "checkout", "-qb", "change")
    return repo


# ---------------------------------------------------------------------- the reference service
@pytest.mark.stack
def test_reference_service_passes_with_a_valid_report_and_a_summary(
    stack: object, tmp_path: Path
) -> None:
    summary = tmp_path / "step-summary.md"
    report = tmp_path / "gate.xml"
    done = gangway(
        "gate", "--junit", str(report), "--json", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert done.returncode == 0, explain(done)
    XSD.validate(str(report))
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    assert list(suites(root)) == GATES
    assert_counts(root)
    body = json.loads(done.stdout)
    assert (body["status"], body["exit_code"], body["pushed"]) == ("passed", 0, False)
    assert int(root.get("tests", "0")) == len(body["checks"])
    # Every function imported in the image; the contract holds for every environment.
    names = {c.get("name") for c in root.iter("testcase")}
    envs = sorted(p.stem for p in (REPO_ROOT / "deployments").glob("*.toml") if p.stem != "service")
    functions = [
        "api",
        "report_worker",
        "telegram",
        "ticker_fetcher",
        "query_tool",
        "precompute_controller",
        "line_webhook",
    ]
    for fn in functions:
        assert any(n.startswith(f"import {fn} (") for n in names), names
        for env in envs:
            assert any(n.startswith(f"{env} · {fn}:") for n in names), (env, fn)
    assert len(suites(root)["config contract"].findall("testcase")) == len(envs) * len(functions)
    # The job summary: status first, details folded, under GitHub's 1 MiB.
    text = summary.read_text()
    assert text.startswith("## ✅ gangway gate passed"), text[:200]
    assert "<details>" in text and summary.stat().st_size < 1024 * 1024
    # No secret of the stack in any report.
    secrets = [v for v in dotenv_values(gangway_home() / "stack.env").values() if v and len(v) >= 8]
    for output in (report.read_text(), done.stdout, text):
        assert not [s for s in secrets if s in output]


# ------------------------------------------------------------ another repository's service
@pytest.mark.stack
def test_no_push_unless_asked_and_no_migration_lint_without_migrations(
    service: Path, tmp_path: Path
) -> None:
    head = _git(service, "rev-parse", "HEAD")
    registry = RegistryClient("127.0.0.1:5000")
    done, root = gate(service, tmp_path)
    assert done.returncode == 0, explain(done)
    assert json.loads(done.stdout)["digest"] is None
    assert registry.digest(SERVICE, head) is None, "the gate pushed without --push"
    lint = suites(root)["migration lint"]
    skipped = lint.find("testcase/skipped")
    assert skipped is not None and "declares no migrations" in skipped.get("message", "")
    assert lint.get("skipped") == "1" and lint.get("failures") == "0"

    pushed, root = gate(service, tmp_path, "--push")
    assert pushed.returncode == 0, explain(pushed)
    digest = json.loads(pushed.stdout)["digest"]
    assert digest and registry.digest(SERVICE, head) == digest
    assert "push" in suites(root)


@pytest.mark.stack
def test_a_missing_module_fails_the_in_image_gate(service: Path, tmp_path: Path) -> None:
    app = service / "src" / "app.py"
    app.write_text("import gangway_no_such_module  # noqa\n" + app.read_text())
    commit(service, "import a module the image does not have")
    summary = tmp_path / "summary.md"
    done, root = gate(service, tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 1, explain(done)
    assert_counts(root)
    failed = failures(root)
    name = f"import {KEY} (app.handler)"
    assert list(failed) == [name], failed
    assert_remedied(failed[name])
    assert "gangway_no_such_module" in failed[name].get("message", "")
    assert suites(root)["in-image import"].get("failures") == "1"
    body = json.loads(done.stdout)
    assert (body["status"], body["exit_code"]) == ("failed", 1)
    wrong = [c for c in body["checks"] if not c["ok"]]
    assert [c["name"] for c in wrong] == [name] and wrong[0]["remedy"]
    text = summary.read_text()
    assert text.startswith("## ❌ gangway gate FAILED: 1 of") and name in text


@pytest.mark.stack
def test_an_image_that_does_not_build_fails_the_build_and_skips_the_import(
    service: Path, tmp_path: Path
) -> None:
    dockerfile = service / "src" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "COPY not_in_the_context.py ./\n")
    commit(service, "copy a file that is not there")
    done, root = gate(service, tmp_path)
    assert done.returncode == 1, explain(done)
    assert_counts(root)
    assert list(failures(root)) == ["image builds"]
    assert_remedied(failures(root)["image builds"])
    skipped = suites(root)["in-image import"].find("testcase/skipped")
    assert skipped is not None and "did not build" in skipped.get("message", "")
    # The gates that need no image still ran.
    assert suites(root)["config contract"].get("failures") == "0"


@pytest.mark.stack
def test_a_key_missing_in_one_environment_fails_the_contract(service: Path, tmp_path: Path) -> None:
    deployments = service / "deployments"
    (deployments / "prod.toml").write_text(DEV_TOML.replace('"dev"', '"prod"'))
    (deployments / "staging.toml").write_text(
        DEV_TOML.replace('"dev"', '"staging"').replace('TZ = "UTC"', 'LOG_LEVEL = "info"')
    )
    commit(service, "staging and prod")
    done, root = gate(service, tmp_path)
    assert done.returncode == 1, explain(done)
    assert_counts(root)
    contract = suites(root)["config contract"]
    assert (contract.get("tests"), contract.get("failures")) == ("3", "1")
    failed = failures(root)
    assert len(failed) == 1, failed
    ((name, failure),) = failed.items()
    assert name.startswith(f"staging · {KEY}:") and "deployments/staging.toml" in name
    assert_remedied(failure)
    assert "missing in staging: TZ" in failure.get("message", "")
    assert "TZ" in failure.text and "deployments/staging.toml" in failure.text
    # As a person reads it: the failure, what is missing and the remedy, then FAILED.
    text = gangway("gate", "--project", str(service))
    assert text.returncode == 1, explain(text)
    assert "missing in staging: TZ" in text.stdout and "remedy: declare TZ" in text.stdout
    assert re.search(r"result\s+FAILED", text.stdout), explain(text)


@pytest.mark.stack
def test_a_destructive_migration_added_on_the_branch_fails_the_lint(
    stack: object, tmp_path: Path
) -> None:
    repo = make_service(tmp_path / "echo")
    _git(repo, "branch", "-M", "main")
    versions = repo / "migrations" / "versions"
    versions.mkdir(parents=True)
    (repo / "migrations" / "env.py").write_text((REPO_ROOT / "migrations" / "env.py").read_text())

    def revision(rev: str, down: str | None, message: str, upgrade: str) -> None:
        (versions / f"{rev}.py").write_text(
            MIGRATION.format(rev=rev, down=repr(down), message=message, upgrade=upgrade)
        )

    toml_text = (repo / "deployments" / "service.toml").read_text()
    (repo / "deployments" / "service.toml").write_text(
        toml_text.replace("[service]\n", '[service]\nmigrations = "migrations"\n', 1)
    )
    with (repo / "deployments" / "dev.toml").open("a") as dev:
        dev.write(
            textwrap.dedent(f"""
            [environment.database]
            host = "127.0.0.1"
            name = "gw_gate_test"
            user = "gw_gate_test"
            password_env = "{DB_PASSWORD_VAR}"
            """)
        )
    revision(
        "0001",
        None,
        "create",
        'op.create_table("notes", '
        'sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.String(80)))',
    )
    # Destructive, but already on main: judged when it was added, never again.
    revision("0002", "0001", "drop body", 'op.drop_column("notes", "body")')
    commit(repo, "migrations on main")
    _git(repo, "checkout", "-qb", "change")
    revision(
        "0003",
        "0002",
        "add title",
        'op.add_column("notes", sa.Column("title", sa.String(80), nullable=True))',
    )
    commit(repo, "an expand-only revision")
    env = {DB_PASSWORD_VAR: "not-a-real-password"}

    done, root = gate(repo, tmp_path, env=env)  # base: main (no origin/main here)
    assert done.returncode == 0, explain(done)
    lint = {c.get("name"): c for c in suites(root)["migration lint"].findall("testcase")}
    assert set(lint) == {"added revisions", "revision 0003"}, lint
    body = json.loads(done.stdout)
    assert body["base"]["ref"] == "main"
    added = next(c for c in body["checks"] if c["name"] == "added revisions")
    assert added["evidence"]["added"] == ["0003"]

    revision("0004", "0003", "drop notes", 'op.drop_table("notes")')
    commit(repo, "a destructive revision")
    done, root = gate(repo, tmp_path, "--base", "main", env=env)
    assert done.returncode == 1, explain(done)
    assert_counts(root)
    failed = failures(root)
    assert list(failed) == ["revision 0004"], failed
    assert_remedied(failed["revision 0004"])
    assert "drops a table" in failed["revision 0004"].get("message", "")
    names = {c.get("name") for c in suites(root)["migration lint"].findall("testcase")}
    assert names == {"added revisions", "revision 0003", "revision 0004"}


# ---------------------------------------------------------------------------- bad input
@pytest.mark.stack
def test_bad_input_exits_2_with_a_clear_message(service: Path, tmp_path: Path) -> None:
    done = gangway("gate", "--project", str(service), "--env", "nope")
    assert done.returncode == 2, explain(done)
    assert "unknown environment 'nope'" in done.stderr and "one of: dev" in done.stderr
    assert "Beginning flow run" not in done.stderr + done.stdout

    done = gangway("gate", "--project", str(tmp_path / "no-such-service"))
    assert done.returncode == 2, explain(done)
    assert "is not a gangway project" in done.stderr and "remedy" in done.stderr

    done = gangway("gate", "--project", str(service), "--base", "no-such-branch", "--json")
    assert done.returncode == 2, explain(done)
    body = json.loads(done.stdout)
    assert body["exit_code"] == 2 and "no-such-branch" in body["error"]["message"]
    assert body["error"]["remedy"]


# ------------------------------------------------------------------ reports (pure, fast)
def _gates(checks: int, failing: int = 0, found: str = "ok") -> list[TimedGate]:
    now = datetime.now(UTC)
    made = [
        Check(name=f"check {i}", ok=i >= failing, expected="x", found=found, remedy="do y")
        for i in range(checks)
    ]
    return [
        TimedGate(
            GateResult(
                gate="in-image import",
                boundary="process",
                strength=Strength.CONTENT,
                checks=tuple(made),
                duration_s=1.5,
            ),
            now,
        ),
        TimedGate(
            GateResult(
                gate="migration lint",
                boundary="data",
                strength=Strength.CONTENT,
                skipped_reason="no migrations",
            ),
            now,
        ),
    ]


def test_junit_report_is_valid_and_counts_failures_and_skips() -> None:
    text = junit_xml(_gates(4, failing=2, found="bad \x1b[31m<value> & more"))
    XSD.validate(text)
    root = ET.fromstring(text)
    assert_counts(root)
    assert (root.get("tests"), root.get("failures")) == ("5", "2")
    first = suites(root)["in-image import"]
    assert (first.get("failures"), first.get("skipped")) == ("2", "0")
    assert suites(root)["migration lint"].get("skipped") == "1"
    for failure in failures(root).values():
        assert_remedied(failure)


def test_summary_stays_under_the_limit_with_a_note() -> None:
    gates = _gates(20_000, failing=3, found="f" * 400)
    text = summary_markdown(gates, "dev · abc", limit=256 * 1024)
    assert len(text.encode()) <= 256 * 1024
    assert text.startswith("## ❌ gangway gate FAILED: 3 of 20000 checks failed")
    assert "truncated" in text and "check 2" in text  # the failures are kept
    full = summary_markdown(gates, "dev · abc")
    assert len(full.encode()) <= 1024 * 1024


def test_summary_is_not_appended_past_the_limit(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("x" * (1024 * 1024 - 100))
    append_summary(target, summary_markdown(_gates(3), "dev"))
    assert target.stat().st_size == 1024 * 1024 - 100


# --------------------------------------------------------------------------- workflows
def _commands(workflow: Path) -> Iterator[list[str]]:
    """Every `gangway …` / `prefect …` command line a workflow's run: steps run."""
    document = yaml.safe_load(workflow.read_text())
    for job in document["jobs"].values():
        for step in job["steps"]:
            script = re.sub(r"\$\{\{[^}]*\}\}", "X", step.get("run", ""))
            for line in script.replace("\\\n", " ").splitlines():
                words = shlex.split(line)
                if words and words[0] in ("gangway", "prefect"):
                    yield words


def test_workflows_match_githubs_schema() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"pr-gate.yml", "deploy.yml"}
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_commands_exist_with_their_flags() -> None:
    pr = list(_commands(WORKFLOWS / "pr-gate.yml"))
    assert [c[:2] for c in pr] == [["gangway", "gate"]]
    for words in pr:
        args = build_parser().parse_args(words[1:])  # exits on an unknown flag
        assert args.junit and args.base
        help_text = subprocess.run(
            [sys.executable, "-m", "cli", *words[1:2], "--help"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            assert flag in help_text, flag

    deploy = list(_commands(WORKFLOWS / "deploy.yml"))
    assert [c[:3] for c in deploy] == [["prefect", "deployment", "run"]]
    words = deploy[0]
    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "deployment", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for flag in (w for w in words if w.startswith("--")):
        assert flag in help_text, flag
    flow_name, deployment_name = words[3].split("/")
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    found = next(d for d in declared if d["name"] == deployment_name)
    assert found["parameters"]["env"] == "staging"
    path, function = found["entrypoint"].split(":")
    module = path.removesuffix(".py").replace("/", ".")
    flow = getattr(__import__(module, fromlist=[function]), function)
    assert flow.name == flow_name
    params = [w.split("=", 1)[0] for i, w in enumerate(words) if i and words[i - 1] == "--param"]
    assert params and set(params) <= set(inspect.signature(flow.fn).parameters)
