"""Scratch commits: a new clean commit of the working tree on demand, the repository untouched.

Benchmarks and tests need a deploy of a NEW commit each time (a new image digest, no build
skip), deployed the way CI deploys a commit (`deploy(env, sha=…)`, which checks the tree out
with `git archive`). The commits are written to a private object directory that borrows the
repository's objects as an alternate (git's GIT_OBJECT_DIRECTORY and
GIT_ALTERNATE_OBJECT_DIRECTORIES, set in this process while the store is open, so every git
command the deploy runs sees them). No ref, index, object or working-tree file of the
repository changes; on close the objects and the deploys' checkout folders are removed.

Each commit is HEAD's tree plus the working tree's current files under the given paths
(uncommitted edits included, ignored files such as vendor/ excluded) plus a stamp file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from gangway.config import gangway_home

GIT_VARIABLES = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")
STAMP_PATH = "service/app/build_stamp.py"


class ScratchCommits:
    """A context manager that makes throw-away commits of root's working tree."""

    def __init__(self, root: Path, paths: list[str], stamp_path: str = STAMP_PATH) -> None:
        self.root = root
        self.paths = paths
        self.stamp_path = stamp_path
        self.commits: list[str] = []
        self._dir: Path | None = None
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> ScratchCommits:
        common = self._git("rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        self._dir = Path(tempfile.mkdtemp(prefix="gangway-scratch-git-"))
        (self._dir / "objects").mkdir()
        self._saved = {name: os.environ.get(name) for name in GIT_VARIABLES}
        os.environ["GIT_OBJECT_DIRECTORY"] = str(self._dir / "objects")
        os.environ["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(Path(common) / "objects")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        checkouts = gangway_home() / "src"
        for sha in self.commits:
            for folder in checkouts.glob(f"{sha}-*"):
                shutil.rmtree(folder, ignore_errors=True)

    def _git(self, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), *args],
            check=True,
            capture_output=True,
            text=True,
            input=stdin,
            env={**os.environ, **(env or {})},
        ).stdout

    def commit(self, stamp: str | None = None) -> str:
        """A new commit (child of HEAD) of the working tree's paths plus a unique stamp file."""
        if self._dir is None:
            raise RuntimeError("ScratchCommits is used outside its `with` block")
        stamp = stamp or uuid.uuid4().hex
        index = {"GIT_INDEX_FILE": str(self._dir / "index")}
        self._git("read-tree", "HEAD", env=index)
        self._git("add", "--all", "--", *self.paths, env=index)
        blob = self._git("hash-object", "-w", "--stdin", stdin=f'STAMP = "{stamp}"\n').strip()
        self._git(
            "update-index", "--add", "--cacheinfo", f"100644,{blob},{self.stamp_path}", env=index
        )
        tree = self._git("write-tree", env=index).strip()
        sha = self._git(
            "-c",
            "user.name=gangway scratch",
            "-c",
            "user.email=scratch@gangway.invalid",
            "commit-tree",
            tree,
            "-p",
            "HEAD",
            "-m",
            f"scratch commit {stamp}",
        ).strip()
        self.commits.append(sha)
        return sha
