"""The headroom gate on REPORT values (no AWS): duration against the timeout's and the client
deadline's share, memory against the memory size's, timeouts always; thresholds from
environment.deploy with per-function overrides, validated naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_repo import DEV_TOML, SERVICE_TOML

from gangway.config import DeployConfig, load_config
from gangway.errors import ConfigError
from tasks.headroom import Limits, judge, limits_for
from tasks.report_lines import Report, parse_report

NAME = "gw-echo-dev-echo"


def config(tmp_path: Path, service_extra: str = "", deploy: str = "") -> DeployConfig:
    """The small test service's configuration, with extra keys for its function / env."""
    (tmp_path / "deployments").mkdir(exist_ok=True)
    service = SERVICE_TOML.replace("app_logs = false\n", f"app_logs = false\n{service_extra}")
    (tmp_path / "deployments" / "service.toml").write_text(service)
    env = DEV_TOML + (f"\n[environment.deploy]\n{deploy}\n" if deploy else "")
    (tmp_path / "deployments" / "dev.toml").write_text(env)
    return load_config("dev", root=tmp_path)


def report(rid: str, duration: float, used: int, size: int = 256, **extra: object) -> Report:
    return Report(
        request_id=rid, duration_ms=duration, max_memory_used_mb=used, memory_size_mb=size,
        **extra,  # type: ignore[arg-type]
    )


def checks(result: object) -> dict[str, object]:
    return {c.name: c for c in result.checks}  # type: ignore[attr-defined]


def test_defaults_are_80_percent_of_the_timeout_and_90_percent_of_memory(
    tmp_path: Path,
) -> None:
    limits = limits_for(config(tmp_path), NAME)  # timeout 10 s, memory 256 MB
    assert (limits.duration_limit_ms, limits.duration_bound) == (8000.0, "timeout")
    assert limits.memory_limit_mb == pytest.approx(230.4)
    passing = judge(NAME, limits, {"a": report("a", 7999, 230), "b": report("b", 10, 20)})
    assert passing.status.value == "passed", passing.summary()
    found = checks(passing)["duration headroom"]
    assert found.evidence["observed_ms"] == 7999 and found.evidence["worst_request"] == "a"
    assert found.evidence["requests"] == ["a", "b"]


def test_a_slow_invoke_fails_duration_and_names_the_worst(tmp_path: Path) -> None:
    limits = limits_for(config(tmp_path), NAME)
    result = judge(NAME, limits, {"a": report("a", 100, 20), "slow": report("slow", 8600, 20)})
    duration = checks(result)["duration headroom"]
    assert not duration.ok and "slow" in duration.found and "8600 ms" in duration.found
    assert "8000 ms" in duration.expected and duration.remedy
    assert checks(result)["memory headroom"].ok and checks(result)["no timeouts"].ok


def test_memory_above_its_share_fails(tmp_path: Path) -> None:
    limits = limits_for(config(tmp_path), NAME, memory_mb=256)
    result = judge(NAME, limits, {"big": report("big", 100, 245)})
    memory = checks(result)["memory headroom"]
    assert not memory.ok and memory.evidence["observed_mb"] == 245
    assert memory.evidence["limit_mb"] == pytest.approx(230.4) and "big" in memory.found


def test_a_timeout_always_fails_whatever_the_thresholds(tmp_path: Path) -> None:
    limits = Limits(timeout_ms=10_000, memory_mb=256, duration_headroom=1.0, memory_headroom=1.0)
    line = (
        "REPORT RequestId: t-1\tDuration: 10000.00 ms\tBilled Duration: 10000 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 40 MB\tStatus: timeout"
    )
    timed_out = parse_report(line)
    assert timed_out is not None
    result = judge(NAME, limits, {"t-1": timed_out})
    assert not checks(result)["no timeouts"].ok and "t-1" in checks(result)["no timeouts"].found
    assert checks(result)["duration headroom"].ok  # 100 % allowed here; the timeout still fails


def test_init_duration_is_not_compared(tmp_path: Path) -> None:
    limits = limits_for(config(tmp_path), NAME)
    cold = report("cold", 500, 40, init_duration_ms=9000.0)
    result = judge(NAME, limits, {"cold": cold})
    assert result.status.value == "passed"
    assert checks(result)["duration headroom"].evidence["init_duration_ms_max"] == 9000.0


def test_a_client_deadline_tightens_the_duration_limit(tmp_path: Path) -> None:
    # A 60 s job behind API Gateway's 29 s: within 80 % of its own timeout, not of its caller's.
    cfg = config(tmp_path, "client_deadline_s = 29\n").model_copy()
    limits = limits_for(cfg, NAME, timeout_ms=60_000)
    assert limits.duration_bound == "client deadline"
    assert limits.duration_limit_ms == pytest.approx(23_200)
    result = judge(NAME, limits, {"job": report("job", 40_000, 40)})
    duration = checks(result)["duration headroom"]
    assert not duration.ok and "client deadline" in duration.found
    assert "29 s client deadline" in duration.expected and "client_deadline_s" in duration.remedy


def test_thresholds_come_from_the_environment_and_a_function_overrides_them(
    tmp_path: Path,
) -> None:
    env_only = limits_for(config(tmp_path, deploy="duration_headroom = 0.5"), NAME)
    assert env_only.duration_limit_ms == 5000.0 and env_only.source == "environment.deploy"
    both = limits_for(
        config(tmp_path, "duration_headroom = 0.95\n", deploy="duration_headroom = 0.5"), NAME
    )
    assert both.duration_limit_ms == 9500.0 and "functions.echo: duration_headroom" in both.source


@pytest.mark.parametrize(
    ("service_extra", "deploy", "key"),
    [
        ("duration_headroom = 1.5\n", "", "functions.echo.duration_headroom"),
        ("client_deadline_s = 0\n", "", "functions.echo.client_deadline_s"),
        ("", "memory_headroom = 0", "environment.deploy.memory_headroom"),
        ("", 'log_ingestion_s = "30"', "environment.deploy.log_ingestion_s"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_key(
    tmp_path: Path, service_extra: str, deploy: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, service_extra, deploy)
    assert key in caught.value.found, caught.value.found


def test_no_report_fails_for_smoke_and_judges_nothing_for_a_quiet_bake(tmp_path: Path) -> None:
    limits = limits_for(config(tmp_path), NAME)
    assert judge(NAME, limits, {}).status.value == "failed"
    assert judge(NAME, limits, {}, what="bake's invocations", required=False).status.value == (
        "passed"
    )
