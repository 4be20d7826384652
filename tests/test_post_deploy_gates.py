"""Post-deploy gates on the real rehearsal stack: smoke invokes, the log scan, ground truth.

Every function of the `prod` rehearsal environment runs the pushed reference image as a
published version; the failure cases run variant images built FROM that image with one line
changed, so each gate is shown failing for the reason it exists (a 200 with an ERROR logged,
a handler that logs nothing, a timeout, the pdf_s3_key INSERT that silently drops the value).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from pathlib import Path

import docker as docker_sdk
import pytest
import sqlalchemy as sa

from gangway.config import DeployConfig, SmokeCase, load_config
from gangway.evidence import GateResult, Status
from rehearsal.lambda_waits import wait_updated
from tasks import schema
from tasks.aws import client
from tasks.ground_truth import check_ground_truth, same
from tasks.lambda_invoke import invoke
from tasks.logs_scan import LogLine, count_invocations, scan_logs, summarise
from tasks.registry import PushedImage, push_image, registry_client, registry_credentials
from tasks.smoke import SmokeOutcome, request_ids, smoke_gate, smoke_invoke

VARIANT_REPOSITORY = "daily-report-variants"
WORKER_CASE = "report worker stores row and PDF"
API_CASE = "api serves the stored report"
TICKER_CASE = "ticker fetcher lists symbols"
QUERY_CASE = "query tool counts reports"
ROOT = "/var/task/app"


def now_ms() -> int:
    return int(time.time() * 1000)


def failures(result: GateResult) -> dict[str, str]:
    return {c.name: c.found for c in result.failures}


def smoke_case(config: DeployConfig, name: str) -> SmokeCase:
    return next(c for c in config.smoke if c.name == name)


# ---------------------------------------------------------------- pure: log classification


def lines(stream: str, *messages: str) -> list[LogLine]:
    return [LogLine(stream, 1000 + i, m) for i, m in enumerate(messages)]


def test_log_summary_attributes_errors_to_their_invocation() -> None:
    summary = summarise(
        lines(
            "2026/01/01/[3]a",
            "START RequestId: r1 Version: 3",
            "[INFO]\t2026-01-01T00:00:00Z\tr1\treport stored",
            "END RequestId: r1",
            "REPORT RequestId: r1\tDuration: 5.00 ms",
            "START RequestId: r2 Version: 3",
            "[ERROR] RuntimeError: boom\rTraceback (most recent call last):\r  File x",
            "END RequestId: r2",
            "REPORT RequestId: r2\tDuration: 5.00 ms",
        )
        + lines(
            "2026/01/01/[3]b",
            "[ERROR] Runtime.ImportModuleError: Unable to import module 'app.x'",
            "START RequestId: r3 Version: 3",
            "END RequestId: r3",
            "REPORT RequestId: r3\tDuration: 1000.00 ms\tStatus: timeout",
        )
    )
    assert (summary.events, summary.app_lines, summary.report_lines) == (12, 3, 3)
    assert summary.errored_requests == {"r2", "r3"}
    assert len(summary.errors["error"]) == 1 and len(summary.errors["runtime"]) == 1
    assert len(summary.errors["timeout"]) == 1


def test_log_summary_ties_each_request_to_its_lines_and_errors() -> None:
    summary = summarise(
        lines(
            "2026/01/01/[3]a",
            "[ERROR] Runtime.ImportModuleError: init failed",
            "START RequestId: r1 Version: 3",
            "END RequestId: r1",
            "REPORT RequestId: r1\tDuration: 5.00 ms",
            "START RequestId: r2 Version: 3",
            "[ERROR] RuntimeError: boom",
        )
        + lines("2026/01/01/[3]b", "REPORT RequestId: r3\tDuration: 5.00 ms")
    )
    assert summary.started == {"r1", "r2"} and summary.ended == {"r1"}
    assert summary.reported == {"r1", "r3"}
    assert summary.streams == {
        "r1": "2026/01/01/[3]a",
        "r2": "2026/01/01/[3]a",
        "r3": "2026/01/01/[3]b",
    }
    # The init failure before r1's START is r1's; the error after r2's START is r2's.
    assert summary.request_errors == {
        "r1": ["[ERROR] Runtime.ImportModuleError: init failed"],
        "r2": ["[ERROR] RuntimeError: boom"],
    }
    assert summary.error_owners == {"timeout": [], "runtime": ["r1"], "error": ["r2"]}


def test_a_report_that_reached_the_timeout_counts_as_a_timeout() -> None:
    stream = lines(
        "2026/01/01/[4]a",
        "START RequestId: r9 Version: 4",
        "END RequestId: r9",
        "REPORT RequestId: r9\tInit Duration: 0.07 ms\tDuration: 1000.00 ms\t"
        "Billed Duration: 1000 ms",
    )
    assert summarise(stream).errored_requests == set()
    timed_out = summarise(stream, timeout_ms=1000)
    assert timed_out.errored_requests == {"r9"}
    assert timed_out.errors["timeout"][0].endswith("(Duration reached the 1000 ms timeout)")


def test_ground_truth_compares_dates_and_decimals_as_text() -> None:
    from datetime import date
    from decimal import Decimal

    assert same(date(2000, 1, 3), "2000-01-03")
    assert same(Decimal("1.50"), "1.50") and same(9, 9)
    assert not same(None, "x") and same(None, None) and not same("a", "b")


# ---------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def prod_config(stack: object) -> DeployConfig:
    """The prod rehearsal environment: this module is the only one changing its functions."""
    return load_config("prod")


@pytest.fixture(scope="module")
def lam(prod_config: DeployConfig) -> object:
    return client(prod_config, "lambda", read_timeout=180)


def publish(lam: object, name: str, image: str, timeout: int | None = None) -> str:
    """Point $LATEST at image (and timeout), publish, and return the new version."""
    lam.update_function_code(FunctionName=name, ImageUri=image)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    if timeout is not None:
        lam.update_function_configuration(FunctionName=name, Timeout=timeout)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    return lam.publish_version(FunctionName=name)["Version"]


@dataclass(frozen=True)
class Deployed:
    versions: dict[str, str]
    since_ms: int
    deploy_s: float


@pytest.fixture(scope="module")
def deployed(prod_config: DeployConfig, pushed_image: PushedImage, lam: object) -> Deployed:
    """Every prod function on the reference image by digest, as a fresh published version."""
    began = time.monotonic()
    since = now_ms()
    schema.upgrade(prod_config)
    versions = {
        fn.key: publish(lam, fn.name, pushed_image.by_digest)
        for fn in prod_config.functions.values()
    }
    return Deployed(versions, since, time.monotonic() - began)


@dataclass(frozen=True)
class SmokeRun:
    result: GateResult
    outcomes: list[SmokeOutcome]
    correlation_id: str
    seconds: float


@pytest.fixture(scope="module")
def smoke_run(prod_config: DeployConfig, deployed: Deployed) -> SmokeRun:
    correlation_id = f"gwtest-{uuid.uuid4().hex[:12]}"
    began = time.monotonic()
    result, outcomes = smoke_gate(prod_config, deployed.versions, correlation_id)
    return SmokeRun(result, outcomes, correlation_id, time.monotonic() - began)


@pytest.mark.stack
def test_seven_smoke_cases_pass_on_the_reference_image(
    prod_config: DeployConfig, deployed: Deployed, smoke_run: SmokeRun
) -> None:
    for outcome in smoke_run.outcomes:
        print(f"smoke {outcome.case!r}: {outcome.result.duration_s:.2f}s {outcome.result.status}")
    print(f"deploy {deployed.deploy_s:.1f}s; 7 smoke cases {smoke_run.seconds:.1f}s")
    assert smoke_run.result.status is Status.PASSED, smoke_run.result.summary() + str(
        failures(smoke_run.result)
    )
    assert [o.case for o in smoke_run.outcomes] == [c.name for c in prod_config.smoke]
    assert len(smoke_run.outcomes) == 7
    for outcome in smoke_run.outcomes:
        assert outcome.executed_version == deployed.versions[outcome.function]
        assert outcome.request_id and "REPORT RequestId" in outcome.log_tail
    worker = smoke_run.outcomes[0]
    assert worker.payload and worker.payload["correlation_id"] == smoke_run.correlation_id
    secrets = prod_config.secret_values()
    assert not any(s in smoke_run.result.model_dump_json() for s in secrets)


def overlaps(a: SmokeOutcome, b: SmokeOutcome) -> bool:
    """The two invokes were in flight at the same time (wall-clock timestamps)."""
    return a.started_at < b.finished_at and b.started_at < a.finished_at


def in_flight_s(outcomes: Sequence[SmokeOutcome]) -> tuple[float, float]:
    """(from the first invoke's start to the last one's end, the sum of the invokes' durations)."""
    wall = max(o.finished_at for o in outcomes) - min(o.started_at for o in outcomes)
    return wall, sum(o.finished_at - o.started_at for o in outcomes)


@pytest.mark.stack
def test_smoke_invokes_of_different_functions_overlap_in_time(
    prod_config: DeployConfig, smoke_run: SmokeRun
) -> None:
    outcomes = smoke_run.outcomes
    wall, summed = in_flight_s(outcomes)
    print(f"7 smoke invokes: {wall:.2f}s from first start to last end, {summed:.2f}s summed")
    pairs = [(a.case, b.case) for a, b in combinations(outcomes, 2) if overlaps(a, b)]
    assert pairs, "no two invokes were in flight at the same time"
    assert all(a.function != b.function for a, b in combinations(outcomes, 2) if overlaps(a, b))
    # Overlap is what makes the invokes' own durations add up to more than the time they took.
    assert wall < summed
    # The api case reads the row the worker's case wrote (after = [...]): never before it.
    by_case = {o.case: o for o in outcomes}
    assert by_case[WORKER_CASE].finished_at <= by_case[API_CASE].started_at


@pytest.mark.stack
def test_log_scan_passes_for_every_smoked_version(
    prod_config: DeployConfig, deployed: Deployed, smoke_run: SmokeRun
) -> None:
    began = time.monotonic()
    ids = request_ids(smoke_run.outcomes)
    for key, version in deployed.versions.items():
        fn = prod_config.functions[key]
        requests = [o.request_id for o in smoke_run.outcomes if o.function == key]
        assert requests and ids[fn.name] == requests
        result = scan_logs(prod_config, fn.name, version, deployed.since_ms, request_ids=requests)
        assert result.status is Status.PASSED, (key, failures(result))
        evidence = result.checks[0].evidence
        assert evidence["report_lines"] >= len(requests) and evidence["app_lines"] >= 1
        # Each smoke invoke is tied to its own START and END/REPORT lines in this version.
        assert evidence["requests"] == {
            r: {"start": True, "end": True, "report": True, "error_lines": 0} for r in requests
        }
        tied = {c.name: c for c in result.checks if c.name.startswith("invocation ")}
        assert set(tied) == {f"invocation {r}" for r in requests}
        assert all(f"[{version}]" in c.evidence["stream"] for c in tied.values())
        assert count_invocations(prod_config, fn.name, version, deployed.since_ms) == (
            len(requests),
            0,
        )
    print(f"log scan of 7 versions {time.monotonic() - began:.2f}s")


@pytest.mark.stack
def test_a_request_whose_log_lines_never_arrive_fails_the_scan(
    prod_config: DeployConfig, deployed: Deployed, smoke_run: SmokeRun
) -> None:
    """A request the version's streams never show: the scan waits, then says it cannot vouch."""
    fn = prod_config.functions["ticker_fetcher"]
    by_function = {o.function: o.request_id for o in smoke_run.outcomes}
    # A real request id, of an invoke of another function: its lines are in other streams.
    own, foreign = by_function["ticker_fetcher"], by_function["query_tool"]
    began = time.monotonic()
    result = scan_logs(
        prod_config,
        fn.name,
        deployed.versions["ticker_fetcher"],
        deployed.since_ms,
        request_ids=[own, foreign],
        wait_s=1.0,
    )
    waited = time.monotonic() - began
    print(f"scan with one unseen request {waited:.2f}s (wait 1 s)")
    assert failures(result) == {
        f"invocation {foreign}": "no line of this request after waiting 1 s"
    }
    [check] = result.failures
    assert "within the scan's 1 s wait" in check.expected and "logs:PutLogEvents" in check.remedy
    assert waited >= 1.0, "the scan gave up before its bounded wait"
    assert result.checks[0].evidence["requests"][own]["report"] is True


# The next two invoke the smoked versions again: after the scans that count invocations.
@pytest.mark.stack
def test_cases_of_one_function_keep_their_declared_order(
    prod_config: DeployConfig, deployed: Deployed
) -> None:
    ticker, query = smoke_case(prod_config, TICKER_CASE), smoke_case(prod_config, QUERY_CASE)
    cases = tuple(
        c.model_copy(update={"name": f"{c.name} #{i}"})
        for i, c in enumerate([ticker, query, ticker, ticker, query])
    )
    config = prod_config.model_copy(update={"smoke": cases})
    result, outcomes = smoke_gate(config, deployed.versions, f"gwtest-{uuid.uuid4().hex[:12]}")
    assert result.status is Status.PASSED, failures(result)
    assert [o.case for o in outcomes] == [c.name for c in cases]
    for function in ("ticker_fetcher", "query_tool"):
        chain = [o for o in outcomes if o.function == function]
        assert all(a.finished_at <= b.started_at for a, b in pairwise(chain))
    assert any(overlaps(a, b) for a, b in combinations(outcomes, 2) if a.function != b.function)


@pytest.mark.stack
def test_invoke_reports_the_request_id_of_its_log_lines(
    prod_config: DeployConfig, deployed: Deployed
) -> None:
    result = invoke(prod_config, "ticker_fetcher", deployed.versions["ticker_fetcher"], b"{}")
    assert result.failure is None and result.executed_version == deployed.versions["ticker_fetcher"]
    assert f"START RequestId: {result.request_id} " in result.log_tail
    assert f"REPORT RequestId: {result.request_id}" in result.log_tail
    assert result.api_request_id and result.started_at < result.finished_at
    print(f"log RequestId {result.request_id}; API RequestId {result.api_request_id}")


@pytest.mark.stack
def test_ground_truth_passes_for_the_report_worker(
    prod_config: DeployConfig, smoke_run: SmokeRun
) -> None:
    case = smoke_case(prod_config, WORKER_CASE)
    worker = smoke_run.outcomes[0]
    result = check_ground_truth(prod_config, case, worker.payload, smoke_run.correlation_id)
    print(f"ground truth {result.duration_s:.2f}s")
    assert result.status is Status.PASSED, failures(result)
    names = {c.name for c in result.checks}
    assert {
        "row in precomputed_reports",
        "precomputed_reports.pdf_s3_key",
        "precomputed_reports.report_json",
        "object in bucket",
        "object content type",
        "object size",
    } <= names


@pytest.mark.stack
def test_ground_truth_without_a_declared_case_is_skipped_not_passed(
    prod_config: DeployConfig, smoke_run: SmokeRun
) -> None:
    case = smoke_case(prod_config, TICKER_CASE)
    result = check_ground_truth(prod_config, case, {}, smoke_run.correlation_id)
    assert result.status is Status.SKIPPED and not result.checks


@pytest.mark.stack
def test_ground_truth_names_a_missing_response_field_and_a_missing_column(
    prod_config: DeployConfig, smoke_run: SmokeRun
) -> None:
    case = smoke_case(prod_config, WORKER_CASE)
    payload = {k: v for k, v in smoke_run.outcomes[0].payload.items() if k != "pdf_s3_key"}
    result = check_ground_truth(prod_config, case, payload, smoke_run.correlation_id)
    found = failures(result)
    assert "$.pdf_s3_key is missing from the response" in found["row in precomputed_reports"]
    assert "$.pdf_s3_key is missing" in found["object in bucket"]

    row = case.ground_truth.row.model_copy(update={"not_null": ("pdf_url",)})
    drifted = case.model_copy(
        update={"ground_truth": case.ground_truth.model_copy(update={"row": row, "object": None})}
    )
    result = check_ground_truth(
        prod_config, drifted, smoke_run.outcomes[0].payload, smoke_run.correlation_id
    )
    assert failures(result) == {
        "precomputed_reports.pdf_url": "precomputed_reports has no column pdf_url: the code's "
        "value for it cannot be stored"
    }


@pytest.mark.stack
def test_invoke_of_a_missing_version_is_a_failed_check_not_an_exception(
    prod_config: DeployConfig, deployed: Deployed
) -> None:
    case = smoke_case(prod_config, TICKER_CASE)
    outcome = smoke_invoke(prod_config, case, "9999", "gwtest-missing")
    assert outcome.result.status is Status.FAILED
    assert list(failures(outcome.result)) == ["invoke"]
    assert "ResourceNotFound" in failures(outcome.result)["invoke"]


# ---------------------------------------------------------------- variant images


@pytest.fixture(scope="module")
def variant(
    docker: docker_sdk.DockerClient,
    prod_config: DeployConfig,
    pushed_image: PushedImage,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str, str], str]]:
    """Build (once per name) an image FROM the reference with one shell edit; yield by digest."""
    built: dict[str, PushedImage] = {}
    image_ids: list[str] = []

    def make(name: str, edit: str) -> str:
        if name in built:
            return built[name].by_digest
        context = Path(tmp_path_factory.mktemp(f"variant-{name}"))
        (context / "Dockerfile").write_text(f"FROM {pushed_image.by_digest}\nRUN {edit}\n")
        tag = f"{name}-{uuid.uuid4().hex[:8]}"
        reference = f"{prod_config.environment.registry}/{VARIANT_REPOSITORY}"
        image, _ = docker.images.build(
            path=str(context), tag=f"{reference}:{tag}", rm=True, forcerm=True
        )
        image_ids.append(image.id)
        built[name] = push_image(
            docker,
            prod_config.environment.registry,
            VARIANT_REPOSITORY,
            tag,
            credentials=registry_credentials(prod_config),
        )
        return built[name].by_digest

    yield make
    registry = registry_client(prod_config)  # prod's registry requires a login
    try:
        for pushed in built.values():
            registry.delete_manifest(pushed.repository, pushed.digest)
    finally:
        registry.close()
    # By id: removing the tag alone leaves the image behind under its registry digest. An
    # invoke the test stopped waiting for may still run in the bridge: let it finish first.
    deadline = time.monotonic() + 60
    for image_id in image_ids:
        while docker.containers.list(filters={"ancestor": image_id}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        docker.images.remove(image_id, force=True)


@pytest.fixture
def restore(
    prod_config: DeployConfig, pushed_image: PushedImage, lam: object
) -> Iterator[Callable[[str], None]]:
    """Register functions whose $LATEST a test changes; put image and timeout back after."""
    saved: dict[str, int] = {}

    def remember(key: str) -> None:
        name = prod_config.functions[key].name
        saved.setdefault(name, lam.get_function_configuration(FunctionName=name)["Timeout"])

    yield remember
    for name, timeout in saved.items():
        lam.update_function_code(FunctionName=name, ImageUri=pushed_image.by_digest)
        wait_updated(lam, name)  # the configuration update would be refused meanwhile
        lam.update_function_configuration(FunctionName=name, Timeout=timeout)
        wait_updated(lam, name)


def ticker_variant(edit: str) -> str:
    path = f"{ROOT}/ticker_fetcher.py"
    return f"{edit} {path} && grep -q gangway-variant {path}"


# The error line also carries the database password, which must never reach gangway's output.
LOG_ERROR = ticker_variant(
    'sed -i \'s/^    return {"symbols"/    log.error("gangway-variant: quote source degraded'
    ' db=%s", __import__("os").environ["DB_PASSWORD"])\\n    return {"symbols"/\''
)
SLEEP = ticker_variant(
    "sed -i 's/^    symbols = SETTINGS.symbols$/    import time  # gangway-variant"
    "\\n    time.sleep(3)\\n    symbols = SETTINGS.symbols/'"
)
SILENT = (
    f"sed -i 's/app_logger.setLevel(logging.INFO)/app_logger.setLevel(logging.CRITICAL)"
    f"  # gangway-variant/' {ROOT}/logs.py && grep -q gangway-variant {ROOT}/logs.py"
)
DROP_PDF_KEY = (
    f"sed -i '/^    \"pdf_s3_key\",$/d' {ROOT}/models.py"
    f" && ! grep -q '^    \"pdf_s3_key\",$' {ROOT}/models.py"
)


def run_ticker(
    config: DeployConfig, lam: object, image: str, timeout: int | None = None
) -> tuple[SmokeOutcome, GateResult, int]:
    fn = config.functions["ticker_fetcher"]
    since = now_ms()
    version = publish(lam, fn.name, image, timeout)
    outcome = smoke_invoke(config, smoke_case(config, TICKER_CASE), version, "gwtest-variant")
    logs = scan_logs(config, fn.name, version, since, request_ids=[outcome.request_id or "?"])
    return outcome, logs, since


@pytest.mark.stack
def test_log_scan_fails_when_the_handler_logs_an_error_but_returns_200(
    prod_config: DeployConfig, lam: object, variant: Callable[[str, str], str], restore
) -> None:
    restore("ticker_fetcher")
    outcome, logs, _ = run_ticker(prod_config, lam, variant("log-error", LOG_ERROR))
    # The surface and the content both look fine ...
    assert outcome.result.status is Status.PASSED, failures(outcome.result)
    # ... the logs do not.
    assert logs.status is Status.FAILED
    found = failures(logs)
    assert list(found) == ["no error lines"]
    assert "gangway-variant: quote source degraded db=***" in found["no error lines"]
    assert "[ERROR]" in found["no error lines"]
    password = prod_config.db_password.get_secret_value()
    assert password not in logs.model_dump_json() and password not in outcome.model_dump_json()


@pytest.mark.stack
def test_log_scan_fails_when_only_start_end_report_lines_exist(
    prod_config: DeployConfig, lam: object, variant: Callable[[str, str], str], restore
) -> None:
    restore("ticker_fetcher")
    outcome, logs, _ = run_ticker(prod_config, lam, variant("silent", SILENT))
    assert outcome.result.status is Status.PASSED, failures(outcome.result)
    found = failures(logs)
    assert list(found) == ["application log lines"]
    assert found["application log lines"].startswith("0 application lines of ")
    assert logs.checks[0].evidence["report_lines"] == 1


@pytest.mark.stack
def test_a_handler_that_times_out_fails_smoke_and_log_scan(
    prod_config: DeployConfig, lam: object, variant: Callable[[str, str], str], restore
) -> None:
    restore("ticker_fetcher")
    began = time.monotonic()
    outcome, logs, since = run_ticker(prod_config, lam, variant("sleep", SLEEP), timeout=1)
    print(f"timeout case {time.monotonic() - began:.1f}s")
    found = failures(outcome.result)
    assert "function timeout" in found, found
    assert "Task timed out after 1.00 seconds" in found["function timeout"]
    assert "no timeouts" in failures(logs), failures(logs)
    fn = prod_config.functions["ticker_fetcher"]
    assert count_invocations(prod_config, fn.name, outcome.qualifier, since) == (1, 1)


@pytest.mark.stack
def test_invoke_wait_is_bounded_by_invoke_timeout(
    prod_config: DeployConfig, lam: object, variant: Callable[[str, str], str], restore
) -> None:
    restore("ticker_fetcher")
    fn = prod_config.functions["ticker_fetcher"]
    version = publish(lam, fn.name, variant("sleep", SLEEP), timeout=10)
    env = prod_config.environment
    impatient = prod_config.model_copy(
        update={
            "environment": env.model_copy(
                update={"deploy": env.deploy.model_copy(update={"invoke_timeout_s": 1})}
            )
        }
    )
    began = time.monotonic()
    outcome = smoke_invoke(impatient, smoke_case(prod_config, TICKER_CASE), version, "gwtest-slow")
    waited = time.monotonic() - began
    assert waited < 2.9, f"the invoke was not bounded: {waited:.1f}s"
    assert failures(outcome.result) == {
        "invoke": f"no response within 1s (the function's timeout is {fn.spec.timeout}s)"
    }


@pytest.mark.stack
def test_ground_truth_catches_the_insert_that_drops_pdf_s3_key(
    prod_config: DeployConfig, lam: object, variant: Callable[[str, str], str], restore
) -> None:
    """The silent-data-loss incident: the payload reports a key, the row has none."""
    restore("report_worker")
    fn = prod_config.functions["report_worker"]
    case = smoke_case(prod_config, WORKER_CASE)
    # A symbol of its own: an upsert over an older row would keep that row's old key.
    event = {**case.event, "symbol": "GWLOSS"}
    row = case.ground_truth.row.model_copy(
        update={"match": {**case.ground_truth.row.match, "symbol": "GWLOSS"}}
    )
    case = case.model_copy(
        update={"event": event, "ground_truth": case.ground_truth.model_copy(update={"row": row})}
    )
    with schema.engine(prod_config).begin() as conn:
        conn.execute(sa.text("DELETE FROM precomputed_reports WHERE symbol = 'GWLOSS'"))

    version = publish(lam, fn.name, variant("drop-pdf-key", DROP_PDF_KEY))
    correlation_id = f"gwtest-{uuid.uuid4().hex[:12]}"
    outcome = smoke_invoke(prod_config, case, version, correlation_id)
    # Surface and content evidence both say success, key included.
    assert outcome.result.status is Status.PASSED, failures(outcome.result)
    assert outcome.payload["pdf_s3_key"].endswith(f"/{correlation_id}.pdf")

    began = time.monotonic()
    truth = check_ground_truth(prod_config, case, outcome.payload, correlation_id)
    print(f"ground truth (incident) {time.monotonic() - began:.2f}s")
    failed = [c for c in truth.failures if "pdf_s3_key" in c.name]
    assert truth.status is Status.FAILED and failed
    assert {c.name for c in truth.failures} == {"precomputed_reports.pdf_s3_key"}
    assert all(c.found == "pdf_s3_key = NULL" for c in failed)
    assert {c.expected for c in failed} == {
        "pdf_s3_key is not NULL",
        f"pdf_s3_key = {outcome.payload['pdf_s3_key']!r}",
    }
    # The object itself was uploaded: only the row lost the key.
    assert {c.name for c in truth.checks if c.ok} >= {"object in bucket", "object size"}
