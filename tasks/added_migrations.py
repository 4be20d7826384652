"""The migrations a change adds, linted offline: a pull-request job has no database.

A change adds the alembic revisions its tree has and the merge-base with the base branch does
not; only those are linted (an older revision was judged when it was added, and may have been
let through on purpose). Their SQL is alembic's offline output for the MySQL dialect, so
nothing connects; without the live columns a MODIFY is judged by its text alone.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gangway.errors import ConfigError
from gangway.evidence import Check, GateResult, Strength
from tasks.migrations import destructive_reasons, revisions_in

DEFAULT_BASES = ("origin/main", "main")
# Only the dialect matters offline: alembic renders SQL for it and never connects.
OFFLINE_URL = "mysql+pymysql://gate@offline/gate"
# Read, not imported: a revision file of the base commit is not code this run should execute.
REVISION_ID = re.compile(r"""^revision\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""", re.M)


@dataclass(frozen=True)
class MergeBase:
    """The base ref the change is compared with, and the merge-base commit with HEAD."""

    ref: str
    sha: str


def _git(root: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def merge_base(root: Path, base: str | None = None) -> MergeBase:
    """The merge-base of HEAD with base (default origin/main, else main); ConfigError when the
    ref is unknown or shares no history with HEAD."""
    candidates = (base,) if base else DEFAULT_BASES
    for ref in candidates:
        if _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None:
            continue
        sha = _git(root, "merge-base", ref, "HEAD")
        if not sha:
            raise ConfigError(
                f"{ref} and HEAD of {root} share no history",
                expected="a base branch HEAD was branched from",
                found="no merge-base",
                remedy="pass the branch the change will merge into (--base REF), fetched with "
                "its history (actions/checkout: fetch-depth: 0)",
            )
        return MergeBase(ref=ref, sha=sha)
    raise ConfigError(
        f"no base ref {' or '.join(candidates)} in {root}",
        expected="the branch the change merges into, to find the revisions it adds",
        found="unknown revision" + ("" if base else "s (neither default exists)"),
        remedy="fetch it (actions/checkout with fetch-depth: 0; `git fetch origin main`) or "
        "pass --base REF",
    )


def revision_ids_at(root: Path, commit: str, folder: str) -> set[str]:
    """The revision ids of the alembic folder (relative to root) in commit's tree."""
    listed = _git(root, "ls-tree", "-r", "--name-only", commit, "--", f"{folder}/versions")
    ids: set[str] = set()
    for path in (listed or "").splitlines():
        if path.endswith(".py"):
            ids.update(REVISION_ID.findall(_git(root, "show", f"{commit}:{path}") or ""))
    return ids


def added_revisions_gate(root: Path, migrations_dir: Path | None, base: MergeBase) -> GateResult:
    """Lint the revisions HEAD's tree adds over the merge-base: expand-only passes."""
    started = time.monotonic()
    gate = {"gate": "migration lint", "boundary": "data", "strength": Strength.CONTENT}
    if migrations_dir is None:
        return GateResult(
            **gate,
            skipped_reason="the service declares no migrations (service.migrations): "
            "nothing to lint",
        )
    try:
        folder = str(migrations_dir.resolve().relative_to(root.resolve()))
        known = revision_ids_at(root, base.sha, folder)
    except ValueError:  # outside the repository: no commit holds it, so all of it is new
        known = set()
    try:
        every = revisions_in(migrations_dir, OFFLINE_URL)
    except Exception as exc:  # a revision file is the change's own code: any error is its
        return GateResult(
            **gate,
            checks=(
                Check(
                    name="revisions load",
                    ok=False,
                    expected=f"alembic reads every revision in {migrations_dir}",
                    found=f"{type(exc).__name__}: {str(exc)[:500]}",
                    remedy="fix the revision file named above (alembic upgrade --sql runs it)",
                ),
            ),
            duration_s=time.monotonic() - started,
        )
    added = [r for r in every if r.id not in known]
    where = f"{base.ref} (merge-base {base.sha[:12]})"
    checks = [
        Check(
            name="added revisions",
            ok=True,
            expected=f"the revisions not on {where}, each expand-only",
            found=f"{len(added)} added: {', '.join(r.id for r in added)}"
            if added
            else f"none added ({len(known)} on the merge-base)",
            evidence={"base": base.ref, "merge_base": base.sha, "added": [r.id for r in added]},
        )
    ]
    for rev in added:
        reasons = [reason for s in rev.statements for reason in destructive_reasons(s)]
        checks.append(
            Check(
                name=f"revision {rev.id}",
                ok=not reasons,
                expected="expand-only (no drop, rename, narrowing or NOT NULL without default)",
                found="; ".join(dict.fromkeys(reasons))
                if reasons
                else f"expand-only: {rev.message}",
                remedy=""
                if not reasons
                else "split it: expand now, contract in a later change once no deployed code uses "
                "the old shape (a deploy lets it through only with --allow-destructive)",
                evidence={"statements": list(rev.statements)} if reasons else {},
            )
        )
    return GateResult(**gate, checks=tuple(checks), duration_s=time.monotonic() - started)
