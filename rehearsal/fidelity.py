"""How closely the rehearsal imitates Lambda's unkind behaviour: one switch per behaviour.

The moto bridge reads these settings at each request, so a test or a benchmark changes them
while the stack runs, for every function or for the functions whose name starts with a prefix
(tests on one shared stack use their own function names, so they do not disturb each other).
They live in ``$GANGWAY_HOME/fidelity.json``::

    {"default": {"update_s": 1.0, ...}, "functions": {"price-alert-dev-": {"log_delay_s": 5}}}

With no file, DEFAULT applies: every behaviour on, with the short values the test suite
runs with. ``OFF`` is the old, instant rehearsal (``bench/deploy.py`` compares both).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from gangway.config import gangway_home
from gangway.errors import StackError
from gangway.file_lock import locked

FILE_NAME = "fidelity.json"


@dataclass(frozen=True)
class Fidelity:
    """Each field is one AWS behaviour the bridge reproduces; 0 / False switches it off."""

    # create_function: State "Pending" (reads say so; invoke/publish refused) for this long.
    pending_s: float = 1.0
    # update_function_code / _configuration: LastUpdateStatus "InProgress" for this long;
    # a second update or a publish meanwhile is a ResourceConflictException.
    update_s: float = 1.0
    # CloudWatch Logs: an event becomes readable this long after it was written, +- jitter.
    log_delay_s: float = 1.0
    log_jitter_s: float = 0.5
    # After an alias write, reads inside this window may return the previous value, each with
    # probability stale_alias_p (1.0: always stale inside the window).
    stale_alias_s: float = 1.0
    stale_alias_p: float = 0.5
    # An execution environment (container) of a function version stays warm this long after
    # its last invoke and serves the next invoke without an init (0: every invoke is cold).
    warm_s: float = 60.0
    # Invokes run with credentials of the function's execution role (sts:AssumeRole on the
    # bridge), evaluated by moto's IAM; False: the stack's allow-everything key, as before.
    execution_role: bool = True

    def merged(self, overrides: dict[str, Any]) -> Fidelity:
        """These settings with the given fields replaced (unknown fields are refused)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise StackError(
                "unknown rehearsal fidelity setting",
                expected=f"fields among {sorted(known)}",
                found=", ".join(unknown),
                remedy=f"fix {FILE_NAME} under GANGWAY_HOME",
            )
        return replace(self, **overrides)


DEFAULT = Fidelity()
OFF = Fidelity(
    pending_s=0.0,
    update_s=0.0,
    log_delay_s=0.0,
    log_jitter_s=0.0,
    stale_alias_s=0.0,
    stale_alias_p=0.0,
    warm_s=0.0,
    execution_role=False,
)


def settings_path(home: Path | None = None) -> Path:
    """``$GANGWAY_HOME/fidelity.json`` (home defaults to $GANGWAY_HOME or ./.gangway)."""
    return (home or gangway_home()).resolve() / FILE_NAME


_cache_lock = threading.Lock()
_cache: dict[Path, tuple[float, dict[str, Any]]] = {}


def _document(path: Path) -> dict[str, Any]:
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    with _cache_lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StackError(
            "the rehearsal fidelity settings cannot be read",
            expected=f"a JSON object in {path}",
            found=str(exc),
            remedy=f"fix or delete {path}",
        ) from exc
    with _cache_lock:
        _cache[path] = (mtime, document)
    return document


def for_function(function_name: str, home: Path | None = None) -> Fidelity:
    """The settings that apply to one function: default, then the longest matching prefix."""
    document = _document(settings_path(home))
    settings = DEFAULT.merged(dict(document.get("default") or {}))
    prefixes = dict(document.get("functions") or {})
    for prefix in sorted(prefixes, key=len):
        if function_name.startswith(prefix):
            settings = settings.merged(dict(prefixes[prefix]))
    return settings


def write(
    default: Fidelity = DEFAULT,
    functions: dict[str, dict[str, Any]] | None = None,
    home: Path | None = None,
) -> Path:
    """Replace the settings file (atomically: the bridge may be reading it)."""
    path = settings_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"default": asdict(default), "functions": functions or {}}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2))
    os.replace(tmp, path)
    return path


def read(home: Path | None = None) -> tuple[Fidelity, dict[str, dict[str, Any]]]:
    """The current default and per-prefix overrides."""
    document = _document(settings_path(home))
    default = DEFAULT.merged(dict(document.get("default") or {}))
    return default, {k: dict(v) for k, v in (document.get("functions") or {}).items()}


_write_lock = threading.Lock()


@contextmanager
def _editing(home: Path | None) -> Iterator[None]:
    """One read-modify-write of the settings at a time, across threads and processes (the
    suite's two lanes override their own prefixes side by side)."""
    with _write_lock, locked(settings_path(home).with_suffix(".lock")):
        yield


@contextmanager
def override(prefix: str, home: Path | None = None, **changes: Any) -> Iterator[Path]:
    """Within the block, functions whose name starts with prefix get these settings."""
    DEFAULT.merged(changes)  # refuse unknown names before writing anything
    with _editing(home):
        default, functions = read(home)
        functions[prefix] = {**functions.get(prefix, {}), **changes}
        path = write(default, functions, home)
    try:
        yield path
    finally:
        with _editing(home):
            default, functions = read(home)
            functions.pop(prefix, None)
            write(default, functions, home)
