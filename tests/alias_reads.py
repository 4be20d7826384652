"""Reading an alias in a test the way a person checks it: after the read lag has passed.

GetAlias is eventually consistent, on AWS and in the rehearsal (rehearsal/fidelity.py
stale_alias_s / stale_alias_p): right after a write a read may return the value from before
it. gangway's own read-backs wait for the write to show (tasks/lambda_alias.py); a test that
judges the alias from outside reads once the rehearsal's lag for that function is over.
"""

from __future__ import annotations

import time

from gangway.config import DeployConfig
from rehearsal import fidelity
from tasks.lambda_read import AliasState, read_alias


def settled_alias(config: DeployConfig, name: str) -> AliasState:
    """The environment's alias of function name, read after the stale-read window."""
    time.sleep(fidelity.for_function(name).stale_alias_s)
    return read_alias(config, name)


def settle(config: DeployConfig) -> None:
    """Wait out the stale-read window of every function of config (one wait for them all)."""
    time.sleep(max((fidelity.for_function(fn.name).stale_alias_s
                    for fn in config.functions.values()), default=0.0))
