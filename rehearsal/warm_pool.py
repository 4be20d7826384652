"""Warm execution environments: a function version's RIE container serves later invokes.

Lambda keeps an execution environment alive for a while after an invoke and hands the next
invoke of the same function version to an idle one (no init, module state and /tmp kept); a
busy environment is never shared, so concurrent invokes each get their own. The moto bridge
keeps its containers in this pool the same way: an environment is keyed by everything that
makes it what it is (function, version, image digest, configuration, credentials), is lent to
one invoke at a time, and is removed when it has been idle longer than its warm time, when
its function's code or configuration no longer matches its key, or when the bridge stops.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException, NotFound

log = logging.getLogger("gangway.warm_pool")

REAP_EVERY_S = 0.25


@dataclass(eq=False)
class Environment:
    """One running RIE container and what the pool knows about it."""

    key: str
    container: Any
    rie_port: int
    # The key the function would have now: when it differs, the code or config changed.
    current_key: Callable[[], str]
    init_ms: float = 0.0
    invokes: int = 0
    idle_since: float = 0.0
    warm_s: float = 0.0
    busy: bool = True
    label: str = ""

    def alive(self) -> bool:
        """The emulator still listens (a crashed runtime's container may have exited)."""
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.rie_port)) == 0


@dataclass
class WarmPool:
    """Idle environments by key; lend one to an invoke, take it back, reap the stale."""

    environments: list[Environment] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reaper: threading.Thread | None = None
    closed: bool = False

    def acquire(self, key: str) -> Environment | None:
        """An idle environment with this key, now busy; None when there is none (a cold start)."""
        while True:
            with self.lock:
                found = next(
                    (e for e in self.environments if not e.busy and e.key == key), None
                )
                if found is None:
                    return None
                found.busy = True
            if found.alive() and found.current_key() == key:
                return found
            self._remove(found)

    def add(self, environment: Environment) -> None:
        """Track a freshly started (busy) environment, so shutdown removes it too."""
        with self.lock:
            self.environments.append(environment)
        self._ensure_reaper()

    def release(self, environment: Environment, warm_s: float, reusable: bool) -> None:
        """The invoke is over: keep the environment idle for warm_s, or remove it now."""
        environment.invokes += 1
        if warm_s <= 0 or not reusable or self.closed or (
            environment.current_key() != environment.key
        ):
            self._remove(environment)
            return
        with self.lock:
            environment.warm_s = warm_s
            environment.idle_since = time.monotonic()
            environment.busy = False

    def idle(self, label: str | None = None) -> list[Environment]:
        """The idle environments (of one function, by its label), for tests and logs."""
        with self.lock:
            return [
                e for e in self.environments if not e.busy and (label is None or e.label == label)
            ]

    def reap(self) -> int:
        """Remove idle environments past their warm time or whose function changed."""
        now = time.monotonic()
        stale: list[Environment] = []
        with self.lock:
            for environment in self.environments:
                if environment.busy:
                    continue
                if now - environment.idle_since > environment.warm_s or (
                    environment.current_key() != environment.key
                ):
                    environment.busy = True  # no invoke may take it while it goes
                    stale.append(environment)
        for environment in stale:
            self._remove(environment)
        return len(stale)

    def close(self) -> None:
        """Remove every environment (the bridge is stopping); later releases remove theirs."""
        self.closed = True
        with self.lock:
            every = list(self.environments)
            for environment in every:
                environment.busy = True
        for environment in every:
            self._remove(environment)

    def _remove(self, environment: Environment) -> None:
        with self.lock:
            if environment in self.environments:
                self.environments.remove(environment)
        try:
            environment.container.remove(force=True)
        except NotFound:
            pass
        except DockerException as exc:
            log.warning("could not remove function container %s: %s", environment.label, exc)

    def _ensure_reaper(self) -> None:
        with self.lock:
            if self.reaper is not None and self.reaper.is_alive():
                return
            self.reaper = threading.Thread(target=self._reap_forever, daemon=True)
            self.reaper.start()

    def _reap_forever(self) -> None:
        while not self.closed:
            time.sleep(REAP_EVERY_S)
            try:
                self.reap()
            except Exception as exc:  # the reaper must outlive one bad removal
                log.warning("warm pool reaper: %s", exc)


POOL = WarmPool()
