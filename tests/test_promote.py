"""Promotion: the promotion policy's rules (pure), then `gangway promote` on the rehearsal stack.

dev → staging on the reference service (same registry, no copy) promotes the digest dev
validated and the record names dev's deploy; the README's promotion sequence runs as
written; a service without a database promotes too (its schema rule is absent, said so).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from service_repo import _git, explain, gangway, make_service

from gangway.config import REPO_ROOT, PromotionSpec, load_config
from gangway.evidence import Check, GateResult, Strength
from gangway.record import DeployRecord, Outcome
from tasks import lambda_read
from tasks.ledger import Ledger
from tasks.promotion_policy import (
    PromotionFacts,
    PromotionRefused,
    SchemaFacts,
    SourceRecord,
    check_schema,
    decide,
)
from tasks.source import source_revision

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
SHA = "1" * 40


def _record(**changes: object) -> SourceRecord:
    base: dict[str, object] = dict(
        deploy_id="d" * 32, kind="deploy", commit_sha=SHA, digest=DIGEST,
        outcome="succeeded", dirty=False, finished_at=NOW - timedelta(seconds=60),
        schema_after="0002",
    )
    base.update(changes)
    return SourceRecord(**base)  # type: ignore[arg-type]


def _facts(*records: SourceRecord, **changes: object) -> PromotionFacts:
    base: dict[str, object] = dict(
        service="svc", sha=SHA, digest=None, source_env="dev", target_env="staging",
        target=PromotionSpec(from_envs=("dev",)), records=records, now=NOW,
    )
    base.update(changes)
    return PromotionFacts(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------- the policy, pure
def test_a_validated_soaked_digest_on_the_path_is_allowed() -> None:
    verdict = decide(_facts(_record()))
    assert verdict.source.deploy_id == "d" * 32
    assert [c.name for c in verdict.checks] == ["path", "validated digest", "soak"]
    assert all(c.ok for c in verdict.checks)


def test_off_the_declared_path_is_refused_unless_skipped_with_a_reason() -> None:
    facts = _facts(_record(), source_env="qa")
    with pytest.raises(PromotionRefused) as refused:
        decide(facts)
    assert "not the declared path" in refused.value.message
    assert "--skip-path" in refused.value.remedy
    verdict = decide(_facts(_record(), source_env="qa", skip_path_reason="hotfix"))
    assert "path skipped" in verdict.checks[0].found and "hotfix" in verdict.checks[0].found


@pytest.mark.parametrize(
    "record",
    [
        _record(outcome="rolled-back"),
        _record(dirty=True),
        _record(kind="rollback"),
        _record(failed_gates=("log scan",)),
    ],
)
def test_a_digest_without_a_clean_success_in_the_source_is_refused(record: SourceRecord) -> None:
    with pytest.raises(PromotionRefused) as refused:
        decide(_facts(record))
    assert "has no validated image in dev" in refused.value.message
    assert record.deploy_id[:12] in refused.value.found


def test_a_sha_with_two_validated_digests_needs_one_named() -> None:
    other = "sha256:" + "b" * 64
    records = (_record(digest=other, deploy_id="e" * 32), _record())
    with pytest.raises(PromotionRefused) as refused:
        decide(_facts(*records))
    assert "--digest" in refused.value.remedy and other in refused.value.found
    assert decide(_facts(*records, digest=DIGEST)).source.digest == DIGEST


def test_an_unsoaked_digest_is_refused_and_zero_soak_is_allowed() -> None:
    fresh = _record(finished_at=NOW - timedelta(seconds=3))
    with pytest.raises(PromotionRefused) as refused:
        decide(_facts(fresh, target=PromotionSpec(soak_s=600)))
    assert "600s" in refused.value.expected and "wait 597s" in refused.value.remedy
    assert decide(_facts(fresh, target=PromotionSpec(soak_s=0))).checks[2].ok


def _live(*checks: tuple[str, bool, str]) -> GateResult:
    return GateResult(
        gate="schema requirement", boundary="data", strength=Strength.GROUND_TRUTH,
        checks=tuple(Check(name=n, ok=ok, expected="varchar", found=f) for n, ok, f in checks),
    )


def test_schema_rule_columns_added_by_pending_revisions_count() -> None:
    facts = SchemaFacts(
        declared=True, required_revision="0002", chain=("0001", "0002"), current="0001",
        pending=("0002",), after_pending={"t": {"a", "b"}},
        live=_live(("t.a", True, "varchar(10)"), ("t.b", False, "column does not exist")),
    )
    assert check_schema(facts, "staging", _record()).ok


def test_schema_rule_a_column_the_target_will_not_have_is_refused() -> None:
    facts = SchemaFacts(
        declared=True, required_revision="0002", chain=("0001", "0002"), current="0002",
        after_pending={"t": {"a"}},
        live=_live(("t.a", True, "varchar(10)"), ("t.b", False, "column does not exist")),
    )
    with pytest.raises(PromotionRefused) as refused:
        check_schema(facts, "staging", _record())
    assert "t.b" in refused.value.message and "nothing moved" in refused.value.remedy


def test_schema_rule_is_absent_without_a_database() -> None:
    check = check_schema(SchemaFacts(declared=False), "staging", _record())
    assert check.ok and check.expected.startswith("absent")


# ------------------------------------------------------------------- on the stack
def _head() -> str:
    return source_revision(REPO_ROOT, []).sha


def _validated_in_dev() -> DeployRecord:
    """A succeeded, clean deploy of HEAD in dev (made when the ledger has none)."""
    head = _head()
    found = [
        r for r in Ledger().by_sha(head, env="dev")
        if r.outcome is Outcome.SUCCEEDED and r.image_digest and not r.dirty
        and r.kind in ("deploy", "promote")
    ]
    if found:
        return found[0]
    done = gangway("deploy", "--env", "dev", "--sha", head, "--json")
    assert done.returncode == 0, explain(done)
    record = Ledger().get(json.loads(done.stdout)["deploy_id"])
    assert record is not None
    return record


def _aliases(env: str, project: Path | None = None) -> dict[str, tuple[str, dict[str, float]]]:
    config = load_config(env, project=project)
    return {
        key: (state.version, dict(state.weights))
        for key, fn in config.functions.items()
        for state in [lambda_read.read_alias(config, fn.name)]
    }


@pytest.mark.stack
def test_dev_to_staging_promotes_the_digest_dev_validated(stack: object) -> None:
    source = _validated_in_dev()
    dev_before = _aliases("dev")
    done = gangway(
        "promote", "--sha", source.commit_sha, "--from", "dev", "--to", "staging",
        "--reason", "CI blocked by an unrelated failure", "--json",
    )
    assert done.returncode == 0, explain(done)
    body = json.loads(done.stdout)
    record = Ledger().get(body["deploy_id"])
    assert record is not None and record.kind == "promote", body
    assert record.outcome is Outcome.SUCCEEDED and record.env == "staging"
    assert record.image_digest == source.image_digest
    assert record.traffic["promoted_from"] == source.deploy_id
    assert f"promoted the image validated by deploy {source.deploy_id} in dev" in record.notes
    assert "reason: CI blocked by an unrelated failure" in record.notes
    assert any(n.startswith("requester: ") for n in record.notes)
    assert any(n.startswith("registry copy: none") for n in record.notes)
    steps = [s.name for s in record.steps]
    assert "pull" in steps and "build" not in steps and "smoke" in steps, steps
    (policy,) = [g for g in record.gates if g.gate == "promotion policy"]
    assert [c.name for c in policy.checks] == [
        "path", "validated digest", "soak", "schema requirement",
    ]
    staging = _aliases("staging")
    for key, move in record.functions.items():
        assert staging[key] == (move.version_after, {}), key
    assert _aliases("dev") == dev_before, "the source environment is never touched"


SECTION = "## Promotion: ship what dev validated to staging"


def readme_commands() -> str:
    """The first sh block of the README's promotion section, exactly as written."""
    section = (REPO_ROOT / "README.md").read_text().split(SECTION, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no ```sh block under {SECTION!r}"
    return match.group(1)


@pytest.mark.stack
def test_the_promotion_sequence_as_the_readme_writes_it(stack: object, tmp_path: Path) -> None:
    known = set(Ledger().deploy_ids("staging"))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_commands()],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    fresh = [r for i in Ledger().deploy_ids("staging") if i not in known
             if (r := Ledger().get(i)) is not None]
    promoted = [r for r in fresh if r.kind == "promote" and r.outcome is Outcome.SUCCEEDED]
    assert len(promoted) == 1, [(r.kind, r.outcome) for r in fresh]
    (record,) = promoted
    assert record.commit_sha == _head()
    source = Ledger().get(record.traffic["promoted_from"])
    assert source is not None and source.env == "dev" and source.outcome is Outcome.SUCCEEDED
    assert source.image_digest == record.image_digest
    assert "promotion dev → staging: ALLOWED" in done.stdout  # the dry run's verdict


STAGING_TOML = """\
[environment]
name = "staging"
registry = "127.0.0.1:5000"

[environment.promotion]
from_envs = ["dev"]

[environment.aws]
region = "ap-southeast-1"
endpoint_url = "http://127.0.0.1:4566"

[function_env]
TZ = "UTC"
"""


@pytest.mark.stack
def test_a_service_without_a_database_promotes(stack: object, tmp_path: Path) -> None:
    repo = make_service(tmp_path / "echo")
    (repo / "deployments" / "staging.toml").write_text(STAGING_TOML)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "staging")
    for env in ("dev", "staging"):
        seeded = gangway("stack", "seed", "--project", str(repo), "--env", env)
        assert seeded.returncode == 0, explain(seeded)
    deployed = gangway("deploy", "--project", str(repo), "--env", "dev", "--json")
    assert deployed.returncode == 0, explain(deployed)
    source = json.loads(deployed.stdout)
    done = gangway(
        "promote", "--project", str(repo), "--sha", source["commit_sha"], "--from", "dev",
        "--to", "staging", "--reason", "second shape", "--json",
    )
    assert done.returncode == 0, explain(done)
    record = Ledger().get(json.loads(done.stdout)["deploy_id"])
    assert record is not None and record.outcome is Outcome.SUCCEEDED
    assert record.traffic["promoted_from"] == source["deploy_id"]
    (policy,) = [g for g in record.gates if g.gate == "promotion policy"]
    schema = next(c for c in policy.checks if c.name == "schema requirement")
    assert schema.expected.startswith("absent"), schema
    assert "migrate" not in [s.name for s in record.steps]
    staging = _aliases("staging", repo)
    for key, move in record.functions.items():
        assert staging[key] == (move.version_after, {}), key
