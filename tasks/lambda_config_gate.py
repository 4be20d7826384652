"""The configuration gate: each deployed function's configuration against what config declares.

Pure: it compares LiveFunction (tasks/lambda_read.py) with the configuration and calls
nothing. Env values are secrets: checks name keys, never values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gangway.config import DeployConfig, ResolvedFunction
from gangway.evidence import Check, GateResult, Strength
from tasks.lambda_read import LiveFunction


def _check(
    fn: ResolvedFunction,
    what: str,
    ok: bool,
    expected: str,
    found: str,
    remedy: str,
    **evidence: Any,
) -> Check:
    return Check(
        name=f"{fn.key} ({fn.name}): {what}",
        ok=ok,
        expected=expected,
        found=found,
        remedy="" if ok else remedy,
        evidence={"function": fn.name, "key": fn.key, **evidence},
    )


def _env_checks(fn: ResolvedFunction, live: LiveFunction) -> list[Check]:
    """Required keys are present; declared values match. Names only: values are secrets."""
    missing = [k for k in fn.spec.required_env if k not in live.env]
    absent = sorted(k for k in fn.env if k not in live.env and k not in missing)
    differ = sorted(
        k
        for k, v in fn.env.items()
        if k in live.env and live.env[k].get_secret_value() != v.get_secret_value()
    )
    drift = "; ".join(
        f"{what}: {', '.join(keys)}"
        for what, keys in (("differ", differ), ("absent", absent))
        if keys
    )
    return [
        _check(
            fn,
            "required env",
            not missing,
            "set: " + ", ".join(fn.spec.required_env),
            "missing: " + ", ".join(missing) if missing else "all set",
            f"add {', '.join(missing)} to the function's environment (infrastructure config)",
            missing=missing,
        ),
        _check(
            fn,
            "declared env values",
            not drift,
            "values as declared in config",
            drift or "as declared",
            f"set {', '.join(differ + absent)} to the declared values (infrastructure config), "
            f"or change functions.{fn.key}.env / function_env",
            differ=differ,
            absent=absent,
        ),
    ]


def _runtime_checks(fn: ResolvedFunction, live: LiveFunction) -> list[Check]:
    """Package type, timeout, memory and architecture as declared."""
    spec = fn.spec
    return [
        _check(
            fn,
            "package type",
            live.package_type == "Image",
            "Image",
            live.package_type,
            "recreate the function as a container-image function (infrastructure config)",
        ),
        _check(
            fn,
            "timeout",
            live.timeout == spec.timeout,
            f"{spec.timeout} s",
            f"{live.timeout} s",
            f"set the function's timeout to {spec.timeout} s (infrastructure config), or "
            f"change functions.{fn.key}.timeout if the design changed",
        ),
        _check(
            fn,
            "memory",
            live.memory == spec.memory,
            f"{spec.memory} MB",
            f"{live.memory} MB",
            f"set the function's memory to {spec.memory} MB (infrastructure config), or "
            f"change functions.{fn.key}.memory if the design changed",
        ),
        _check(
            fn,
            "architecture",
            list(live.architectures) == [spec.architecture],
            f"[{spec.architecture}]",
            f"[{', '.join(live.architectures)}]",
            f"set Architectures=[{spec.architecture}] (infrastructure config) to match the "
            "image the pipeline builds",
        ),
    ]


def config_gate(config: DeployConfig, live: Mapping[str, LiveFunction]) -> GateResult:
    """Compare each deployed function's configuration with what config declares (pure)."""
    started = time.monotonic()
    checks: list[Check] = []
    for key, fn in config.functions.items():
        found = live.get(key)
        if found is None:
            checks.append(
                _check(
                    fn,
                    "exists",
                    False,
                    "described",
                    "not described",
                    "describe every configured function before the gate",
                )
            )
            continue
        checks.extend(_runtime_checks(fn, found) + _env_checks(fn, found))
    return GateResult(
        gate="function config",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )
