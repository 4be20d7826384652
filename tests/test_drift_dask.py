"""The drift flow gives the same report under Prefect's Dask task runner (a LocalCluster of
worker processes) as under its default thread pool: the setting changes where the reads run,
never what they find."""

from __future__ import annotations

from pathlib import Path

import pytest
from drift_world import World, live_env, move_alias, publish, seed, set_configuration
from test_drift import drift_stack  # noqa: F401  (the module fixture, shared)


@pytest.fixture(scope="module")
def world(drift_stack: None, tmp_path_factory: pytest.TempPathFactory) -> World:  # noqa: F811
    """A world with a Terraform-owned and a pipeline-owned difference."""
    base = tmp_path_factory.mktemp("drift-dask")
    made = seed(base, f"sqlite:///{base / 'ledger.sqlite3'}")
    set_configuration(made, "query_tool", Timeout=75)
    env = live_env(made, "api")
    env["EXTRA"] = "1"
    set_configuration(made, "api", Environment={"Variables": env})
    move_alias(made, "report_worker", publish(made, "report_worker"))
    return made


def _rows(world: World, runner: object, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    from flows.drift import DriftFound, drift, rows

    monkeypatch.setenv("GANGWAY_LEDGER_URL", world.ledger_url)
    try:
        drift.with_options(task_runner=runner)(env=world.env, project=str(world.root))
    except DriftFound as found:
        return sorted(tuple(r.values()) for r in rows(found.report))
    pytest.fail("the drifted world reported no drift")


def test_the_dask_runner_gives_the_same_report(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = _rows(world, ThreadPoolTaskRunner(max_workers=4), monkeypatch)
    dask = _rows(
        world,
        DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True}),
        monkeypatch,
    )
    assert dask == threads
    kinds = {(r[2], r[3].split(" ")[0]) for r in threads}
    assert kinds == {
        ("timeout", "query_tool"),
        ("undeclared env", "api"),
        ("alias not from the ledger", "report_worker"),
    }


def test_the_runner_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from prefect_dask import DaskTaskRunner

    from flows.drift import task_runner
    from gangway.errors import ConfigError

    monkeypatch.setenv("GANGWAY_DRIFT_RUNNER", "dask")
    assert isinstance(task_runner(), DaskTaskRunner)
    monkeypatch.setenv("GANGWAY_DRIFT_RUNNER", "spark")
    with pytest.raises(ConfigError):
        task_runner()
