"""The pipeline → git boundary: which commit is deployed, and its tree when it is not HEAD."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gangway.errors import ConfigError


@dataclass(frozen=True)
class SourceRevision:
    """The commit a build comes from, and whether the tree had uncommitted changes."""

    sha: str
    dirty: bool

    @property
    def tag(self) -> str:
        """The image tag: the full SHA, marked when built from a dirty tree."""
        return f"{self.sha}-dirty" if self.dirty else self.sha


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def source_revision(root: Path, paths: list[Path]) -> SourceRevision:
    """HEAD of the repository at root, dirty when any of paths has uncommitted changes."""
    try:
        sha = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--", *map(str, paths))
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConfigError(
            f"cannot read the commit of {root}",
            expected="a git checkout with at least one commit",
            found=str(getattr(exc, "stderr", "") or exc)[:300],
            remedy="run gangway from the service's git checkout",
        ) from exc
    return SourceRevision(sha=sha, dirty=bool(status.strip()))


def resolve_sha(root: Path, sha: str) -> str:
    """The full SHA of a commit given by full or abbreviated SHA; ConfigError when unknown."""
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
    except subprocess.CalledProcessError as exc:
        raise ConfigError(
            f"commit {sha!r} does not exist in {root}",
            expected="a commit SHA of this repository",
            found="unknown revision",
            remedy="check the SHA (`git log --oneline`), or `git fetch` the commit first",
        ) from exc


def outside_repository(root: Path, paths: list[Path]) -> list[Path]:
    """The paths (resolved, so symlinks and '..' count) that are not inside the repository."""
    top = root.resolve()
    return [p for p in paths if not p.resolve().is_relative_to(top)]


def checkout_tree(root: Path, sha: str, paths: list[str], into: Path) -> Path:
    """Extract paths of commit sha into a cache folder (reused), and return the folder.

    paths are relative to root and inside it; anything else is refused (git archive would
    crash on it), as is a path the commit does not hold.
    """
    bad = [p for p in paths if Path(p).is_absolute() or ".." in Path(p).parts]
    if bad:
        raise ConfigError(
            f"cannot take {', '.join(bad)} from commit {sha[:12]}",
            expected=f"paths inside the repository {root}, relative to it",
            found=", ".join(bad),
            remedy="use a path inside the repository for service.build.context, "
            "service.build.dockerfile and service.migrations",
        )
    # One folder per (commit, set of paths): a later deploy asking for more paths of the same
    # commit must not reuse a folder that lacks them.
    key = hashlib.sha256("\0".join(sorted(paths)).encode()).hexdigest()[:12]
    target = into / f"{sha}-{key}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", sha, "--", *paths],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        stderr = getattr(exc, "stderr", b"") or b""
        raise ConfigError(
            f"commit {sha[:12]} does not hold {', '.join(paths)}",
            expected=f"{', '.join(paths)} in the tree of {sha[:12]}",
            found=(stderr.decode(errors="replace").strip() or str(exc))[:300],
            remedy="deploy a commit that has the service's build context and migrations, "
            "or fix the paths in service.toml",
        ) from exc
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / ".complete").write_text(sha)
    return target
