"""Where gangway last left each alias, read from the ledger, and a read of the live aliases
that waits out Lambda's stale reads when they disagree with it.

Alias reads are eventually consistent: for a moment after a write (a restore by recovery
seconds ago, the previous deploy's shift) GetAlias may still answer the value from before it.
A deploy that took such a read as "the version before" would record the wrong version to
restore and rebuild a version it already has. Re-reading only where the read differs from the
ledger costs nothing on the usual path; a real outside change still wins after the window.
"""

from __future__ import annotations

from gangway.config import DeployConfig
from gangway.record import DeployRecord, Outcome
from tasks.aws import client
from tasks.lambda_alias import read_back
from tasks.lambda_read import AliasState, LiveFunction
from tasks.ledger import Ledger

RECENT = 20  # closed records looked at, newest first


def left_by(record: DeployRecord) -> dict[str, str]:
    """Function key → the version this closed record left its alias on (keys it cannot vouch
    for omitted: nothing moved, or moved and not restored)."""
    left: dict[str, str] = {}
    for key, move in record.functions.items():
        if move.alias_moved and move.restore_verified and (move.restored_to or move.version_before):
            left[key] = move.restored_to or move.version_before or ""
        elif move.alias_moved and record.outcome is Outcome.SUCCEEDED and move.version_after:
            left[key] = move.version_after
    return left


def last_left(ledger: Ledger, config: DeployConfig) -> dict[str, str]:
    """Function key → the version gangway last left its alias on, per the ledger."""
    env, service = config.environment.name, config.service.name
    records = [r for r in ledger.recent(env, limit=RECENT, service=service) if r.service == service]
    return from_records(records, set(config.functions))


def from_records(newest_first: list[DeployRecord], keys: set[str]) -> dict[str, str]:
    """For each key, what the newest closed record that moved its alias left it on (omitted
    when that record cannot vouch for it: moved, then neither succeeded nor restored)."""
    expected: dict[str, str] = {}
    decided: set[str] = set()
    for record in newest_first:
        if record.outcome is Outcome.RUNNING:
            continue
        for key, version in left_by(record).items():
            if key not in decided:
                expected[key] = version
        decided |= {k for k, m in record.functions.items() if m.alias_moved}
        if decided >= keys:
            break
    return expected


def settled(
    config: DeployConfig, live: dict[str, LiveFunction], expected: dict[str, str]
) -> dict[str, LiveFunction]:
    """live, with every alias that reads unlike expected re-read until it shows expected or
    environment.deploy.alias_read_window_s has passed (then the last read stands)."""
    lam = client(config, "lambda")
    alias, window = config.environment.alias, config.environment.deploy.alias_read_window_s
    out = dict(live)
    for key, fn in live.items():
        version = expected.get(key)
        if version is None or (fn.alias.version == version and not fn.alias.weights):
            continue
        want = AliasState(name=alias, version=version)
        out[key] = fn.model_copy(update={"alias": read_back(lam, alias, fn.name, want, window)})
    return out
