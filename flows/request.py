"""Accepting a deploy request: every input checked before any side effect.

The CLI calls ``validate_request`` before a flow run starts, so bad input is refused (exit 2)
without a failed Prefect run; the flow calls it again for runs started elsewhere. A refusal is
still on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gangway.config import DeployConfig, gangway_home, load_config
from gangway.errors import ConfigError, GangwayError
from gangway.record import DeployRecord, Outcome
from tasks.ledger import Ledger
from tasks.registry import PushedImage
from tasks.source import (
    SourceRevision,
    checkout_tree,
    outside_repository,
    resolve_sha,
    source_revision,
)


def resolve_source(config: DeployConfig, sha: str | None) -> tuple[DeployConfig, SourceRevision]:
    """The revision to deploy and a config whose build context and migrations hold its tree.

    A build input outside the repository (context, Dockerfile, migrations) is not part of any
    commit: the image is not what the SHA alone describes, so the revision is dirty (tagged so,
    never promotable). With a SHA such an input cannot come from the commit: it is used from
    disk as it is, and everything inside the repository comes from the commit.
    """
    root = config.root.resolve()
    dockerfile = (config.build_context / config.service.build.dockerfile).resolve()
    inputs = [config.build_context, dockerfile]
    if config.migrations_dir is not None:
        inputs.append(config.migrations_dir)
    outside = outside_repository(root, inputs)
    inside = [p for p in inputs if p not in outside]
    head = source_revision(config.root, inside)
    if outside:
        head = SourceRevision(sha=head.sha, dirty=True)
    if sha is None:
        return config, head
    full = resolve_sha(config.root, sha)
    if full == head.sha and not head.dirty:
        return config, head
    revision = SourceRevision(sha=full, dirty=bool(outside))
    rel = sorted({str(p.resolve().relative_to(root)) for p in inside})
    tree = checkout_tree(config.root, full, rel, gangway_home() / "src") if rel else root
    if not outside:
        return config.model_copy(update={"root": tree}), revision

    def placed(path: Path) -> Path:
        return path if path in outside else tree / path.resolve().relative_to(root)

    build = config.service.build.model_copy(
        update={"context": placed(config.build_context), "dockerfile": str(placed(dockerfile))}
    )
    migrations = config.migrations_dir
    service = config.service.model_copy(
        update={"build": build, "migrations": placed(migrations) if migrations else None}
    )
    return config.model_copy(update={"root": tree, "service": service}), revision


@dataclass(frozen=True)
class Request:
    """A validated deploy request: configuration, source revision, and (a promotion,
    flows/promote.py) the validated image it deploys by digest instead of building."""

    config: DeployConfig
    revision: SourceRevision
    promoted: PushedImage | None = None
    validated_by: str = ""


def validate_request(
    env: str,
    sha: str | None,
    canary_percent: int,
    bake_s: int,
    project: str | None = None,
) -> Request:
    """Check every input before any side effect: traffic, configuration, SHA.

    project: the service's checkout (gangway.config.project_root); its repository is the
    source of the commit, the build context and the migrations.

    A plain function: the CLI calls it before the flow run starts, so bad input is refused
    (exit 2) without a failed Prefect run; the flow calls it again for runs started elsewhere.
    """
    if not 0 <= canary_percent < 100:
        raise ConfigError(
            "canary percent out of range",
            expected="0 (all at once) to 99",
            found=str(canary_percent),
            remedy="pass --canary between 1 and 99, or omit it",
        )
    if bake_s < 0 or (canary_percent and bake_s == 0):
        raise ConfigError(
            "a canary needs a bake time",
            expected="--bake > 0 with --canary",
            found=f"bake {bake_s}s",
            remedy="pass --bake SECONDS",
        )
    config = load_config(env, project=project)
    policy = config.environment.deploy
    if bake_s > policy.max_bake_s:
        raise ConfigError(
            f"a bake of {bake_s}s is longer than {env} allows",
            expected=f"--bake at most environment.deploy.max_bake_s = {policy.max_bake_s}s "
            f"(a bake holds {env}'s deploy lock throughout)",
            found=f"--bake {bake_s}",
            remedy=f"pass --bake {policy.max_bake_s} or less, or raise max_bake_s under "
            f"[environment.deploy] in {env}.toml",
        )
    if not config.smoke:
        raise ConfigError(
            "the service declares no smoke cases",
            expected="at least one [[smoke]] case: without one nothing proves the new version",
            found="none",
            remedy="add [[smoke]] cases to service.toml (or the environment's file)",
        )
    require_evidence(config)
    config, revision = resolve_source(config, sha)
    return Request(config, revision)


# What each level of environment.deploy.require asks of a service's declared gates.
EVIDENCE_GATES = {
    "smoke": "smoke cases (content)",
    "observability": "a log scan of the smoked versions (observability)",
    "ground-truth": "a smoke case with ground_truth (a row or an object proven in storage)",
}


def require_evidence(config: DeployConfig) -> None:
    """Refuse, before anything moves, an environment that demands stronger evidence than the
    service's declared gates can reach."""
    required = config.environment.deploy.require
    if required != "ground-truth" or config.has_ground_truth:
        return  # smoke is always declared, and every smoked version's logs are scanned
    env = config.environment.name
    raise ConfigError(
        f"{env} requires ground-truth evidence, and {config.service.name} declares no smoke "
        "case that can reach it",
        expected=f"environment.deploy.require = {required!r}: {EVIDENCE_GATES[required]}",
        found="smoke cases: " + ", ".join(repr(c.name) for c in config.smoke)
        + " (none with ground_truth)",
        remedy="add [smoke.ground_truth] (a row or an object the case leaves) to a smoke case, "
        f"or lower environment.deploy.require in {env}.toml if {env} may accept less",
    )


def record_refusal(
    env: str,
    sha: str | None,
    exc: GangwayError,
    flow_run_id: str | None = None,
    service: str = "",
) -> DeployRecord:
    """Bad input is refused before anything changes, and the refusal is still on record."""
    now = datetime.now(UTC)
    return Ledger().write(
        DeployRecord(
            env=env,
            commit_sha=sha or "",
            service=service,
            outcome=Outcome.REFUSED,
            trigger={"step": "input", "error": exc.render()[:2000], "checks": []},
            message="refused: bad input; nothing changed",
            started_at=now,
            finished_at=now,
            flow_run_id=flow_run_id,
        )
    )
