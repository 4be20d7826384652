"""`gangway prune` on the rehearsal stack: every rollback target stays, the rest goes.

A service without a database (its own name and repository, so no other test's versions or
images are in play) is deployed four times, one commit each; an older version is put on the
alias as a canary by hand. A dry run lists deletions and changes nothing; the prune then
deletes exactly those: the alias, canary and previous versions still answer, the others are
ResourceNotFound, deleted manifests are 404 and kept digests still pull. What is asserted is
read back from Lambda, the registry, the engine and the ledger.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import docker as docker_sdk
import pytest
from alias_reads import settle
from botocore.exceptions import ClientError
from service_repo import APP, KEY, _git, explain, gangway, make_service

from gangway.config import load_config
from gangway.prune_plan import FunctionVersions, PruneInputs, RouteState, plan_prune
from gangway.record import DeployRecord, FunctionMove, Outcome
from tasks.aws import client
from tasks.ledger import Ledger
from tasks.registry import RegistryClient

# Its own service per run: no earlier run's versions or images (or another test's) are in play.
SERVICE = f"gw-prune-{uuid.uuid4().hex[:6]}"
FUNCTION = f"{SERVICE}-dev-{KEY}"
DEPLOYS = 4


def _deploy(repo: Path, n: int) -> dict[str, Any]:
    (repo / "src" / "app.py").write_text(APP + f"\n# prune test commit {n}\n")
    _git(repo, "commit", "-qam", f"commit {n}")
    done = gangway("deploy", "--project", str(repo), "--env", "dev", "--json")
    assert done.returncode == 0, explain(done)
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def _versions(lam: Any) -> set[str]:
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=FUNCTION)
    return {v["Version"] for page in pages for v in page["Versions"]} - {"$LATEST"}


def _prune(repo: Path, *flags: str) -> dict[str, Any]:
    done = gangway("prune", "--project", str(repo), "--env", "dev", "--keep", "1", "--json", *flags)
    assert done.returncode == 0, explain(done)
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _prune_ids() -> set[str]:
    return {r.deploy_id for r in Ledger().recent("dev", limit=20) if r.kind == "prune"}


def _planned(plan: dict[str, Any], kind: str, action: str) -> set[str]:
    return {i["ref"] for i in plan["items"] if i["kind"] == kind and i["action"] == action}


@pytest.fixture(scope="module")
def deployed(stack: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The service seeded and deployed DEPLOYS times; its records, oldest first."""
    repo = make_service(tmp_path_factory.mktemp("svc") / "prune")
    toml = repo / "deployments" / "service.toml"
    toml.write_text(toml.read_text().replace("gw-echo", SERVICE))
    _git(repo, "commit", "-qam", "rename")
    done = gangway("stack", "seed", "--project", str(repo), "--env", "dev")
    assert done.returncode == 0, explain(done)
    return {"repo": repo, "records": [_deploy(repo, n) for n in range(DEPLOYS)]}


@pytest.mark.stack
def test_prune_keeps_every_rollback_target_and_removes_the_rest(
    deployed: dict[str, Any],
) -> None:
    repo: Path = deployed["repo"]
    records: list[dict[str, Any]] = deployed["records"]
    config = load_config("dev", project=repo)
    lam = client(config, "lambda")
    registry = RegistryClient(config.environment.registry)
    after = [r["functions"][KEY]["version_after"] for r in records]
    digests = [r["image_digest"] for r in records]
    canary, previous, live = after[0], after[-2], after[-1]
    assert len(set(after)) == DEPLOYS and len(set(digests)) == DEPLOYS
    lam.update_alias(
        FunctionName=FUNCTION, Name="live",
        RoutingConfig={"AdditionalVersionWeights": {canary: 0.1}},
    )
    try:
        before = _versions(lam)
        prunes = _prune_ids()
        dry = _prune(repo, "--dry-run")
        plan = dry["plan"]
        kept = _planned(plan, "version", "keep")
        doomed = _planned(plan, "version", "delete")
        assert {canary, previous, live, "$LATEST"} <= kept
        # With --keep 1 only the last deploy's before/after, the alias and the canary stay.
        assert doomed == before - {canary, previous, live} and after[1] in doomed
        doomed_digests = _planned(plan, "manifest", "delete")
        kept_digests = _planned(plan, "manifest", "keep")
        assert digests[1] in doomed_digests
        assert {digests[0], digests[-2], digests[-1]} <= kept_digests
        assert any("canary" in " ".join(i["why"]) for i in plan["items"] if i["ref"] == canary)
        # The dry run changed nothing and recorded nothing.
        assert dry["record"] is None and dry["done"] == []
        assert _versions(lam) == before
        assert all(registry.digest(SERVICE, d) == d for d in doomed_digests)
        assert _prune_ids() == prunes

        done = _prune(repo)
        assert _planned(done["plan"], "version", "delete") == doomed
        assert _planned(done["plan"], "manifest", "delete") == doomed_digests
        assert {d["ref"] for d in done["done"]} == doomed | doomed_digests
        assert _versions(lam) == before - doomed
        for version in doomed:
            with pytest.raises(ClientError) as gone:
                lam.get_function(FunctionName=FUNCTION, Qualifier=version)
            assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
        for version in (canary, previous, live):
            assert lam.get_function(FunctionName=FUNCTION, Qualifier=version)
        for digest in doomed_digests:
            assert registry.manifest(SERVICE, digest) is None
        engine = docker_sdk.from_env()
        for digest in (digests[0], digests[-2], digests[-1]):
            assert engine.images.pull(f"{config.environment.registry}/{SERVICE}@{digest}")
        record = Ledger().get(done["record"])
        assert record is not None and record.kind == "prune" and record.service == SERVICE
        assert record.outcome is Outcome.SUCCEEDED
        text = "\n".join(record.notes)
        assert f"deleted {FUNCTION}:{after[1]}" in text and digests[1] in text
        assert f"{FUNCTION}:{canary} (alias live canary 10%)" in text
        # The next deploy publishes a new version number, its previous one still there.
        lam.update_alias(FunctionName=FUNCTION, Name="live", RoutingConfig={})
        latest = _deploy(repo, DEPLOYS)["functions"][KEY]
        assert latest["version_before"] == live
        assert int(latest["version_after"]) > max(int(v) for v in before)
    finally:
        lam.update_alias(FunctionName=FUNCTION, Name="live", RoutingConfig={})
        registry.close()


@pytest.mark.stack
def test_reference_service_dry_run_keeps_what_its_aliases_route_to(stack: object) -> None:
    """The reference service's plan: every alias version kept, nothing changed or recorded."""
    config = load_config("dev")
    lam = client(config, "lambda")
    ledger_before = Ledger().deploy_ids("dev")
    done = gangway("prune", "--env", "dev", "--dry-run", "--json")
    assert done.returncode == 0, explain(done)
    plan = json.loads(done.stdout)["plan"]
    settle(config)
    for fn in config.functions.values():
        alias = lam.get_alias(FunctionName=fn.name, Name="live")
        mine = {i["ref"]: i for i in plan["items"] if i["where"] == fn.name}
        assert mine[alias["FunctionVersion"]]["action"] == "keep"
        assert "alias live" in mine[alias["FunctionVersion"]]["why"]
    bootstrap = [i for i in plan["items"] if "bootstrap" in i["tags"]]
    assert bootstrap and all(i["action"] == "keep" for i in bootstrap)
    assert Ledger().deploy_ids("dev") == ledger_before


def test_bad_keep_is_bad_input() -> None:
    done = gangway("prune", "--env", "dev", "--keep", "0", "--dry-run")
    assert done.returncode == 2, explain(done)
    assert "--keep" in done.stderr


def _record(env: str, outcome: Outcome, before: str, after: str, digest: str) -> DeployRecord:
    return DeployRecord(
        env=env, service=SERVICE, commit_sha="c" * 40, outcome=outcome, image_digest=digest,
        functions={KEY: FunctionMove(name=FUNCTION, version_before=before, version_after=after)},
    )


def _inputs(**changes: Any) -> PruneInputs:
    digest = {v: f"sha256:{v * 64}" for v in "123456"}
    base = PruneInputs(
        service=SERVICE, env="staging", keep=1,
        functions=[FunctionVersions(KEY, FUNCTION, digest, RouteState("live", "3"))],
        records=[
            _record("staging", Outcome.RUNNING, "3", "6", digest["6"]),
            _record("staging", Outcome.SUCCEEDED, "2", "3", digest["3"]),
            _record("staging", Outcome.SUCCEEDED, "1", "2", digest["2"]),
        ],
        windows={"dev": [_record("dev", Outcome.SUCCEEDED, "4", "5", digest["5"])]},
        repository=SERVICE,
        tags={f"t{v}": d for v, d in digest.items()},
        protected_tags={},
    )
    return dataclasses.replace(base, **changes)


def test_plan_keeps_a_running_deploys_versions_and_other_environments_promotion_sources() -> None:
    """A version a deploy in progress published is not deleted under it; a digest another
    environment's window holds (validated in dev, promotable here) stays in the registry."""
    plan = plan_prune(_inputs())
    deleted = {(i.kind, i.ref) for i in plan.deletions}
    assert ("version", "6") not in deleted and ("version", "2") not in deleted  # 2: previous
    assert deleted >= {("version", "1"), ("version", "4"), ("version", "5")}
    assert ("manifest", f"sha256:{'5' * 64}") not in deleted  # dev's promotion source
    assert ("manifest", f"sha256:{'1' * 64}") in deleted


def test_plan_deletes_no_manifest_when_an_environment_could_not_be_read() -> None:
    plan = plan_prune(_inputs(unread={"prod": "no credentials"}))
    assert not [i for i in plan.deletions if i.kind == "manifest"]
    assert ("version", "1") in {(i.kind, i.ref) for i in plan.deletions}


def test_plan_keeps_a_version_another_read_of_the_alias_routed_to() -> None:
    """A read of the alias may be stale for a moment after a write: a version any read in
    the window routed to may carry traffic, so it is kept (with why), never deleted."""
    routed = RouteState("live", "3", also_seen=("1",))
    fn = FunctionVersions(KEY, FUNCTION, {v: f"sha256:{v * 64}" for v in "123456"}, routed)
    plan = plan_prune(_inputs(functions=[fn]))
    assert ("version", "1") not in {(i.kind, i.ref) for i in plan.deletions}
    kept = [i for i in plan.items if i.kind == "version" and i.ref == "1"]
    assert kept and "another read" in " ".join(kept[0].why), kept
    # Without the other read, the same plan deletes it: the field is what keeps it.
    assert ("version", "1") in {(i.kind, i.ref) for i in plan_prune(_inputs()).deletions}
