"""The drift ignore file: differences a team accepts, each with its reason.

``drift-ignore.toml`` at the project root (beside deployments/), for example::

    [[ignore]]
    kind = "undeclared env"          # a kind the drift report names (required)
    env = "dev"                      # glob, default "*"
    function = "api"                 # glob on the function key (or the table), default "*"
    keys = ["DEBUG"]                 # env keys / columns it covers; default: all of the finding
    reason = "set by the on-call runbook for tracing"   # required
    until = 2027-01-31               # optional: after this date the rule no longer applies

An ignored difference stays in the report (evidence ``ignored``: the reason) but is not drift.
A rule without a reason, with an unknown kind, or an unreadable file is bad input (ConfigError).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gangway.config import read_toml
from gangway.errors import ConfigError
from gangway.evidence import Check
from tasks.drift_compare import Kind

FILE = "drift-ignore.toml"
_FIELDS = {"kind", "env", "function", "keys", "reason", "until"}


@dataclass(frozen=True)
class IgnoreRule:
    """One accepted difference and why."""

    kind: str
    reason: str
    env: str = "*"
    function: str = "*"
    keys: tuple[str, ...] = ()
    until: dt.date | None = None

    def covers(self, check: Check, today: dt.date) -> bool:
        """True when this rule accepts the failed check."""
        ev = check.evidence
        if self.until is not None and today > self.until:
            return False
        if ev.get("kind") != self.kind or not fnmatch.fnmatchcase(str(ev.get("env", "")), self.env):
            return False
        subject = str(ev.get("function") or ev.get("table") or ev.get("subject") or "")
        if not fnmatch.fnmatchcase(subject, self.function):
            return False
        if not self.keys:
            return True
        named = list(ev.get("keys") or ev.get("extra") or []) or [ev.get("column")]
        return all(k in self.keys for k in named if k)


def _bad(path: Path, index: int, problem: str) -> ConfigError:
    return ConfigError(
        f"{path.name}: ignore rule {index + 1} {problem}",
        expected="[[ignore]] with kind (one the drift report names) and a reason",
        found=problem,
        remedy=f"fix rule {index + 1} in {path}; kinds: {', '.join(k.value for k in Kind)}",
    )


def load_rules(root: Path) -> tuple[IgnoreRule, ...]:
    """The project's ignore rules (none without the file); ConfigError when malformed."""
    path = root / FILE
    if not path.is_file():
        return ()
    document = read_toml(path)
    rules = []
    kinds = {k.value for k in Kind}
    for index, raw in enumerate(document.get("ignore", [])):
        unknown = set(raw) - _FIELDS
        if unknown:
            raise _bad(path, index, f"has unknown keys {', '.join(sorted(unknown))}")
        if raw.get("kind") not in kinds:
            raise _bad(path, index, f"names kind {raw.get('kind')!r}")
        reason = str(raw.get("reason", "")).strip()
        if not reason:
            raise _bad(path, index, "gives no reason")
        until = raw.get("until")
        if until is not None and not isinstance(until, dt.date):
            raise _bad(path, index, f"has until = {until!r}, not a date")
        rules.append(
            IgnoreRule(
                kind=raw["kind"],
                reason=reason,
                env=str(raw.get("env", "*")),
                function=str(raw.get("function", "*")),
                keys=tuple(raw.get("keys", ())),
                until=until,
            )
        )
    return tuple(rules)


def apply(
    checks: Sequence[Check], rules: Sequence[IgnoreRule], today: dt.date | None = None
) -> tuple[Check, ...]:
    """checks with every failure a rule accepts turned into a pass that names the reason."""
    day = today or dt.datetime.now(dt.UTC).date()
    out = []
    for check in checks:
        rule = next((r for r in rules if not check.ok and r.covers(check, day)), None)
        if rule is None:
            out.append(check)
            continue
        out.append(
            check.model_copy(
                update={
                    "ok": True,
                    "remedy": "",
                    "evidence": {**check.evidence, "ignored": rule.reason},
                }
            )
        )
    return tuple(out)
