"""Approval of a promotion: the request, the decision, who is asking, and who may answer.

Pure values and rules; the wait itself is flows/approval.py's (a Prefect pause) and the answer
from a terminal is cli/approve.py's. An identity is taken from CI or the operating system,
never typed in: a typed name proves nothing, while a CI variable names the account that
started the job and the OS user the account at the keyboard.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from gangway.errors import GangwayError

# Who approved through Prefect's UI: open-source Prefect has no users, so nothing says who
# pressed the button; the record says so rather than guess.
UI_APPROVER = "prefect-ui"

# (variable naming the person, namespace, variables giving the job's context) in the order
# they are trusted: the first CI that names someone wins over the OS user it runs as.
_CI_IDENTITIES: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = (
    (("GITHUB_ACTOR",), "github", ("GITHUB_WORKFLOW", "GITHUB_RUN_ID")),
    (("GITLAB_USER_LOGIN",), "gitlab", ("CI_PROJECT_PATH", "CI_PIPELINE_ID")),
    (
        ("BUILDKITE_BUILD_CREATOR_EMAIL", "BUILDKITE_BUILD_CREATOR"),
        "buildkite",
        ("BUILDKITE_PIPELINE_SLUG", "BUILDKITE_BUILD_NUMBER"),
    ),
    (("BUILD_USER_ID",), "jenkins", ("JOB_NAME", "BUILD_NUMBER")),
)


class ApprovalRefused(GangwayError):
    """An approval that may not be given (the requester approving their own promotion)."""

    boundary = "approval"


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approver is asked to allow: one digest of one service, source → target."""

    service: str
    source_env: str
    target_env: str
    digest: str
    commit_sha: str
    requester: str
    reason: str
    plan_text: str
    timeout_s: float

    def to_json(self) -> dict[str, Any]:
        """The request as JSON values (what the paused run keeps for `gangway approve`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        """The request read back from to_json's values (unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["timeout_s"] = float(values.get("timeout_s", 0))
        return cls(**values)


@dataclass(frozen=True)
class ApprovalDecision:
    """The answer: approved or not, by whom, why, when; timed_out when nobody answered."""

    approved: bool
    approver: str
    reason: str
    decided_at: datetime
    timed_out: bool = False


def requester_identity(env: Mapping[str, str] | None = None) -> str:
    """Who is acting: the CI account that started the job, else `user@host` of this process."""
    env = os.environ if env is None else env
    for names, namespace, context_names in _CI_IDENTITIES:
        person = next((env[n].strip() for n in names if env.get(n, "").strip()), "")
        if not person:
            continue
        context = " ".join(env[n].strip() for n in context_names if env.get(n, "").strip())
        return f"{namespace}:{person}" + (f" ({context})" if context else "")
    return f"{_os_user()}@{socket.gethostname()}"


def person(identity: str) -> str:
    """The person an identity names, with its system, host and job context dropped.

    `github:alice (deploy 42)`, `alice@laptop` and `Alice@ci` are all `alice`: the same name in
    two systems is taken to be the same person, which can only refuse too much, never allow a
    requester to approve themselves from another machine or CI.
    """
    name = re.sub(r"\s*\(.*\)\s*$", "", identity.strip())
    name = name.split(":", 1)[1] if ":" in name else name
    # An e-mail (Buildkite) or user@host (the OS) both name their person before the '@'.
    return name.split("@", 1)[0].strip().lower()


def check_approver(request: ApprovalRequest, approver: str) -> None:
    """Refuse (ApprovalRefused) an approver who is the requester or has no identity."""
    if not person(approver):
        raise ApprovalRefused(
            "an approval without an approver identity cannot be accepted",
            expected="the approver's identity from CI or the operating system",
            found=repr(approver),
            remedy="approve with `gangway approve RUN --reason …` from your own account",
        )
    if person(approver) == person(request.requester):
        raise ApprovalRefused(
            f"{approver} requested this promotion of {request.service} to "
            f"{request.target_env} and cannot approve it too",
            expected=f"an approver other than the requester ({request.requester}): "
            f"{request.target_env} requires approval by a second person",
            found=f"approver {approver} is the requester {request.requester}",
            remedy="ask another engineer to run `gangway approve RUN --reason …` (the run "
            "stays paused), or withdraw it with `gangway approve RUN --reject --reason …`",
        )


def render_request(request: ApprovalRequest, flow_run_id: str = "") -> str:
    """The text shown to the approver (Markdown: Prefect's UI renders it over the form)."""
    run = flow_run_id or "RUN"
    lines = [
        f"## Approve promotion of {request.service}: {request.source_env} → "
        f"{request.target_env}?",
        "",
        f"- **digest**: `{request.digest}`",
        f"- **commit**: `{request.commit_sha}`",
        f"- **requested by**: {request.requester}",
        f"- **reason**: {request.reason}",
        f"- **waits**: {request.timeout_s:.0f}s, then the promotion ends with nothing moved",
        "",
        "The plan it will run once approved (the policy is checked again first):",
        "",
        "```",
        request.plan_text.rstrip(),
        "```",
        "",
        f"From a terminal: `gangway approve {run} --reason \"…\"` "
        f"(or `--reject`). The requester cannot approve their own promotion.",
    ]
    return "\n".join(lines)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())
