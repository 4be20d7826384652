"""Scratch commits for benchmarks and tests: new clean commits, the repository left untouched."""

from __future__ import annotations

import os
import subprocess

from gangway.config import REPO_ROOT
from rehearsal.scratch_commits import GIT_VARIABLES, ScratchCommits


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)


def test_each_commit_is_new_and_readable_only_while_the_store_is_open() -> None:
    before = (git("status", "--porcelain").stdout, git("rev-parse", "HEAD").stdout)
    saved = {name: os.environ.get(name) for name in GIT_VARIABLES}
    with ScratchCommits(REPO_ROOT, ["service"], "service/app/build_stamp.py") as scratch:
        first, second = scratch.commit("one"), scratch.commit("two")
        assert first != second
        # Children of HEAD that differ from it by the stamp file (plus the working tree's
        # uncommitted edits under the paths, if any).
        assert git("rev-parse", f"{first}^").stdout == before[1]
        shown = git("show", f"{second}:service/app/build_stamp.py").stdout
        assert shown == 'STAMP = "two"\n'
        assert "service/app/build_stamp.py" in git("diff", "--name-only", "HEAD", first).stdout
    # Gone afterwards: no object, ref, index entry or working-tree file of the repository.
    assert git("cat-file", "-e", first).returncode != 0
    assert (git("status", "--porcelain").stdout, git("rev-parse", "HEAD").stdout) == before
    assert not (REPO_ROOT / "service" / "app" / "build_stamp.py").exists()
    assert {name: os.environ.get(name) for name in GIT_VARIABLES} == saved
