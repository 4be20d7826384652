"""Deployment faults in the AWS control plane: what gangway needs but must not create.

Functions and aliases are infrastructure: a deploy that finds one missing stops while it is
still reading the world, and says which one and who creates it.
"""

from __future__ import annotations

import pytest
from alias_reads import settle

from tasks.aws import client

from .conftest import FaultRun

pytestmark = pytest.mark.stack


@pytest.mark.fault("the function does not exist", group="deployment")
def test_missing_function_stops_before_anything_moves(
    fault: FaultRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = f"{fault.config.functions['api'].name}-missing"
    monkeypatch.setenv("GANGWAY_FUNCTIONS__API__NAME", missing)
    attempt = fault.deploy()
    fault.blocked(
        attempt, step="observe", boundary="aws", says=(missing, "does not exist", "infrastructure")
    )


@pytest.mark.fault("the alias does not exist", group="deployment")
def test_missing_alias_stops_before_anything_moves(fault: FaultRun) -> None:
    fn = fault.config.functions["query_tool"]
    alias = fault.config.environment.alias
    lam = client(fault.config, "lambda")
    settle(fault.config)
    version = lam.get_alias(FunctionName=fn.name, Name=alias)["FunctionVersion"]
    lam.delete_alias(FunctionName=fn.name, Name=alias)
    fault.rebaseline()  # the missing alias is the world this row starts from
    try:
        attempt = fault.deploy()
        # The judge reads the alias back: still absent, so gangway did not create it (that
        # is infrastructure's job), and every other alias is where it was.
        fault.blocked(
            attempt,
            step="observe",
            boundary="aws",
            says=(f"alias {alias} of function {fn.name} does not exist", "create alias"),
        )
    finally:
        lam.create_alias(FunctionName=fn.name, Name=alias, FunctionVersion=version)
