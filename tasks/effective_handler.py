"""Which handler each function will really run, and where that comes from.

Lambda runs the function's ImageConfig.Command when the function sets one, otherwise the
image's CMD; the Python runtime interface client takes the first word as the handler. The
entry point is the image's ENTRYPOINT unless the function sets ImageConfig.EntryPoint.
Configuration's ``functions.X.handler`` is only what the service declares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gangway.config import DeployConfig, ResolvedFunction
from gangway.dockerfile import SHELL, DockerfileCmd, read_cmd
from gangway.evidence import Check

INFRA_CODE = "your infrastructure code (gangway deploys code, not infrastructure)"
# What the runtime interface client can import: dotted names, the last one the function.
IMPORTABLE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


@dataclass(frozen=True)
class ImageCmd:
    """The image's CMD and ENTRYPOINT (engine inspect) and the Dockerfile line that sets CMD."""

    command: tuple[str, ...]
    entrypoint: tuple[str, ...]
    dockerfile: str  # relative to the project when inside it
    located: DockerfileCmd | None  # None: the Dockerfile could not be read

    @property
    def where(self) -> str:
        """'service/Dockerfile:9', or how the CMD got there when no line sets it."""
        if self.located is None:
            return f"{self.dockerfile} (not readable)"
        if self.located.line is None:
            return f"inherited from the base image {self.located.base}".rstrip()
        return f"{self.dockerfile}:{self.located.line}"


@dataclass(frozen=True)
class HandlerSource:
    """The handler a function will run (None: nothing), where it comes from, how to fix it."""

    key: str
    handler: str | None
    source: str
    fix: str  # the remedy's first half: where to change the effective handler
    live: bool  # whether the function's live configuration was known
    deferred: str = ""  # why the match is left to the deploy (no live info), else ""

    @property
    def importable(self) -> bool:
        """Whether the handler has the module.attribute shape the runtime can import."""
        return bool(self.handler and IMPORTABLE.match(self.handler))


def image_cmd(config: DeployConfig, inspect: Mapping[str, Any]) -> ImageCmd:
    """The image's CMD/ENTRYPOINT from an engine image inspect, located in the Dockerfile."""
    engine = inspect.get("Config") or {}
    path = dockerfile_path(config)
    try:
        shown = str(path.resolve().relative_to(config.root.resolve()))
    except ValueError:
        shown = str(path)
    return ImageCmd(
        command=tuple(engine.get("Cmd") or ()),
        entrypoint=tuple(engine.get("Entrypoint") or ()),
        dockerfile=shown,
        located=read_cmd(path),
    )


def _cmd_fix(image: ImageCmd, want: str) -> str:
    exact = f'CMD ["{want}"]'
    if image.located is not None and image.located.line is None:
        return f"add {exact} to the last stage of {image.dockerfile} (the CMD is {image.where})"
    return f"set {exact} at {image.where}"


def _from_image(key: str, fn: ResolvedFunction, image: ImageCmd, live: bool) -> HandlerSource:
    want = fn.spec.handler
    override = f'set ImageConfig.Command = ["{want}"] on function {fn.name} in {INFRA_CODE}'
    if not image.command:
        return HandlerSource(
            key,
            None,
            "no CMD in the image and no ImageConfig.Command on the function"
            if live
            else "no CMD in the image (no live function info)",
            f"{_cmd_fix(image, want)}, or {override}",
            live,
        )
    source = f"the image's CMD ({image.where})"
    fix = _cmd_fix(image, want)
    if image.command[:2] == SHELL:
        # Shell form: Lambda hands "/bin/sh" to the runtime as the handler.
        source = f"the image's CMD in shell form ({image.where})"
        fix = f"use the JSON-array form {fix}"
    return HandlerSource(key, image.command[0], source, f"{fix}, or {override}", live)


def resolve(
    config: DeployConfig,
    image: ImageCmd,
    image_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, HandlerSource]:
    """Each function's effective handler; image_configs: live ImageConfig by key, None unknown.

    Without live information the image's CMD is all there is, except for a function that
    declares functions.X.command_override: its infrastructure sets ImageConfig.Command, which
    only a deploy can read, so its declared handler is imported and the override is checked
    at deploy time. Every other function must be served by the image's CMD.
    """
    sources: dict[str, HandlerSource] = {}
    for key, fn in config.functions.items():
        known = image_configs is not None and key in image_configs
        command = tuple((image_configs or {}).get(key, {}).get("Command") or ()) if known else ()
        if command:
            sources[key] = HandlerSource(
                key,
                command[0],
                "the function's ImageConfig.Command",
                f'set ImageConfig.Command = ["{fn.spec.handler}"] on function {fn.name} in '
                f"{INFRA_CODE}",
                live=True,
            )
            continue
        source = _from_image(key, fn, image, live=known)
        if not known and fn.spec.command_override and source.handler != fn.spec.handler:
            source = HandlerSource(
                key,
                fn.spec.handler,
                "configuration's handler (its command override is checked at deploy time)",
                source.fix,
                live=False,
                deferred=f"functions.{key}.command_override: function {fn.name} runs "
                f'ImageConfig.Command = ["{fn.spec.handler}"] (set by the infrastructure), '
                "read and checked at deploy time",
            )
        sources[key] = source
    return sources


def handler_check(fn: ResolvedFunction, source: HandlerSource) -> Check:
    """The handler the function will run is the one configuration declares."""
    want = fn.spec.handler
    name = f"effective handler {fn.key}"
    expected = f"{want} (functions.{fn.key}.handler)"
    basis = "" if source.live else "no live function info: judged against the image's CMD alone"
    evidence = {"source": source.source, **({"basis": basis} if basis else {})}
    if source.deferred:
        return Check(
            name=name,
            ok=True,
            expected=expected,
            found=f"not judged here: {source.deferred}",
            evidence=evidence,
        )
    if source.handler is None:
        return Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"nothing to run: {source.source}",
            remedy=source.fix,
            evidence=evidence,
        )
    ok = source.handler == want
    return Check(
        name=name,
        ok=ok,
        expected=expected,
        found=f"{source.handler} from {source.source}" + (f" ({basis})" if basis else ""),
        remedy="" if ok else f"{source.fix}, or fix functions.{fn.key}.handler",
        evidence=evidence,
    )


def entrypoint_check(
    config: DeployConfig,
    image: ImageCmd,
    image_configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Check:
    """The image has an entry point and no function replaces it (the gate proves the image's)."""
    overrides = {
        key: tuple(conf.get("EntryPoint") or ())
        for key, conf in (image_configs or {}).items()
        if key in config.functions and conf.get("EntryPoint")
    }
    changed = {k: v for k, v in overrides.items() if v != image.entrypoint}
    found = f"the image's ENTRYPOINT {list(image.entrypoint)}"
    if changed:
        found += "; replaced by " + ", ".join(
            f"{config.functions[k].name}'s ImageConfig.EntryPoint {list(v)}"
            for k, v in sorted(changed.items())
        )
    if not image.entrypoint and not overrides:
        remedy = (
            "build FROM a Lambda base image (ENTRYPOINT /lambda-entrypoint.sh) or set an "
            "ENTRYPOINT that starts the runtime interface client"
        )
    elif changed:
        remedy = (
            f"remove ImageConfig.EntryPoint from those functions in {INFRA_CODE}, or make it "
            f"the image's ENTRYPOINT in {image.dockerfile}"
        )
    else:
        remedy = ""
    return Check(
        name="entry point",
        ok=not remedy,
        expected="the image's own ENTRYPOINT (a runtime interface client), not replaced by a "
        "function",
        found=found + ("" if image_configs is not None else " (no live function info)"),
        remedy=remedy,
    )


def dockerfile_path(config: DeployConfig) -> Path:
    """The Dockerfile the build uses."""
    return config.build_context / config.service.build.dockerfile
