"""Where gangway last left each alias, read from the ledger, and a read of the live aliases
that waits out Lambda's stale reads when they echo the value gangway's last write replaced.

Alias reads are eventually consistent: for a moment after a write (a restore by recovery
seconds ago, the previous deploy's shift) GetAlias may still answer the value from before it.
A deploy that took such a read as "the version before" would record the wrong version to
restore and rebuild a version it already has. Only a read that could be such an echo (it
routes to nothing but the version the ledger says is live and the one that write replaced)
is re-read; any other read is a real change made outside gangway and is taken at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gangway.config import DeployConfig
from gangway.record import DeployRecord, Outcome
from tasks.aws import client
from tasks.lambda_alias import read_back
from tasks.lambda_read import AliasState, LiveFunction
from tasks.ledger import Ledger

RECENT = 20  # closed records looked at, newest first


@dataclass(frozen=True)
class Left:
    """The version a record left an alias on, and the one that write replaced."""

    version: str
    replaced: str | None = None

    def maybe_stale(self, read: AliasState) -> bool:
        """The read differs from where gangway left the alias only as a stale echo of the
        write would (it routes to nothing but these two versions)."""
        if read.version == self.version and not read.weights:
            return False
        return read.routed() <= {self.version, self.replaced}


def left_by(record: DeployRecord) -> dict[str, Left]:
    """Function key → where this closed record left its alias (keys it cannot vouch for
    omitted: nothing moved, or moved and neither succeeded nor restored)."""
    left: dict[str, Left] = {}
    for key, move in record.functions.items():
        restored = move.restored_to or move.version_before
        if move.alias_moved and move.restore_verified and restored:
            left[key] = Left(restored, move.version_after)
        elif move.alias_moved and record.outcome is Outcome.SUCCEEDED and move.version_after:
            left[key] = Left(move.version_after, move.version_before)
    return left


def last_left(ledger: Ledger, config: DeployConfig) -> dict[str, Left]:
    """Function key → where gangway last left its alias, per the ledger."""
    env, service = config.environment.name, config.service.name
    records = [r for r in ledger.recent(env, limit=RECENT, service=service) if r.service == service]
    return from_records(records, set(config.functions))


def from_records(newest_first: list[DeployRecord], keys: set[str]) -> dict[str, Left]:
    """For each key, where the newest closed record that moved its alias left it (omitted
    when that record cannot vouch for it: moved, then neither succeeded nor restored)."""
    expected: dict[str, Left] = {}
    decided: set[str] = set()
    for record in newest_first:
        if record.outcome is Outcome.RUNNING:
            continue
        for key, left in left_by(record).items():
            if key not in decided:
                expected[key] = left
        decided |= {k for k, m in record.functions.items() if m.alias_moved}
        if decided >= keys:
            break
    return expected


def settled(
    config: DeployConfig, live: dict[str, LiveFunction], expected: dict[str, Left]
) -> dict[str, LiveFunction]:
    """live, with every alias read that may be a stale echo re-read until it shows where
    gangway left it or environment.deploy.alias_read_window_s has passed (the last read
    stands)."""
    lam = client(config, "lambda")
    alias, window = config.environment.alias, config.environment.deploy.alias_read_window_s
    suspect = [
        (key, fn, expected[key])
        for key, fn in live.items()
        if key in expected and expected[key].maybe_stale(fn.alias)
    ]
    if not suspect:
        return live

    def reread(item: tuple[str, LiveFunction, Left]) -> tuple[str, LiveFunction]:
        key, fn, left = item
        want = AliasState(name=alias, version=left.version)
        return key, fn.model_copy(update={"alias": read_back(lam, alias, fn.name, want, window)})

    with ThreadPoolExecutor(max_workers=min(8, len(suspect))) as pool:
        return {**live, **dict(pool.map(reread, suspect))}
