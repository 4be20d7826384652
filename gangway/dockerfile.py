"""Reading a Dockerfile: where the last stage's CMD is set, the build args it declares, the
images it starts FROM. Pure text → values, for the in-image gate, the build, `gangway init`
and the rehearsal's package index.

The CMD: the last stage's CMD instruction and its line.
Read from the Dockerfile's text (no engine): logical instructions across line continuations,
comments and the ``escape`` parser directive, stages by ``FROM``; a final stage built FROM an
earlier stage inherits that stage's CMD. The engine's image inspect says WHAT the CMD is; this
says WHERE to change it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

DIRECTIVE = re.compile(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
SHELL = ("/bin/sh", "-c")
# Docker accepts these without an ARG line (the proxy variables), so they are never "unused".
PREDEFINED_ARGS = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    """One logical Dockerfile instruction and the line it starts on (1-based)."""

    line: int
    keyword: str
    args: str


@dataclass(frozen=True)
class DockerfileCmd:
    """The CMD the last stage ends with: its line (None: inherited from the base image)."""

    line: int | None
    command: tuple[str, ...]
    json_form: bool
    base: str  # the image the CMD-setting chain starts FROM (for "inherited" messages)


def _escape_char(lines: list[str]) -> str:
    # Parser directives are only honoured at the very top, before any comment or instruction.
    for raw in lines:
        match = DIRECTIVE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape" and match.group(2) in ("\\", "`"):
            return match.group(2)
    return "\\"


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's logical instructions, continuations joined, comments dropped."""
    lines = text.splitlines()
    escape = _escape_char(lines)
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        # A comment or blank line never ends a continuation (Docker drops them inside one).
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        continued = raw.rstrip().endswith(escape)
        parts.append(raw.rstrip()[:-1] if continued else raw)
        if continued:
            continue
        found.append(_instruction(start, parts))
        parts = []
    if parts:
        found.append(_instruction(start, parts))
    return found


def _instruction(start: int, parts: list[str]) -> Instruction:
    # Docker joins continued lines as they are: only the escape and the newline go.
    keyword, _, args = "".join(parts).strip().partition(" ")
    return Instruction(start, keyword.upper(), args.strip())


def parse_command(args: str) -> tuple[tuple[str, ...], bool]:
    """(argv, JSON form?) of a CMD's arguments; the shell form runs under /bin/sh -c."""
    if args.startswith("["):
        try:
            value = json.loads(args)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value), True
    return (*SHELL, args), False


def _from_parts(args: str) -> tuple[str, str]:
    """(base image, stage name) of a FROM instruction's arguments."""
    words = [w for w in args.split() if not w.startswith("--")]
    base = words[0] if words else ""
    name = words[2] if len(words) >= 3 and words[1].lower() == "as" else ""
    return base, name.lower()


def last_stage_cmd(text: str) -> DockerfileCmd:
    """The CMD of the Dockerfile's last stage, following FROM <earlier stage> chains."""
    stages: list[tuple[str, str, Instruction | None]] = []  # (base, name, last CMD)
    for ins in instructions(text):
        if ins.keyword == "FROM":
            base, name = _from_parts(ins.args)
            stages.append((base, name, None))
        elif ins.keyword == "CMD" and stages:
            base, name, _ = stages[-1]
            stages[-1] = (base, name, ins)
    index = len(stages) - 1
    while index >= 0:
        base, _, cmd = stages[index]
        if cmd is not None:
            command, json_form = parse_command(cmd.args)
            return DockerfileCmd(cmd.line, command, json_form, base)
        # FROM an earlier stage (by name or index): that stage's CMD carries over.
        earlier = [
            i for i, (_, name, _) in enumerate(stages[:index]) if base.lower() in (name, str(i))
        ]
        if not earlier:
            return DockerfileCmd(None, (), True, base)
        index = earlier[-1]
    return DockerfileCmd(None, (), True, "")


def read_cmd(dockerfile: Path) -> DockerfileCmd | None:
    """The last stage's CMD of the Dockerfile at path; None when it cannot be read."""
    try:
        return last_stage_cmd(dockerfile.read_text(errors="replace"))
    except OSError:
        return None


def declared_args(text: str) -> dict[str, str | None]:
    """Every ``ARG NAME[=default]`` of the Dockerfile (any stage): name → default or None."""
    declared: dict[str, str | None] = {}
    for item in instructions(text):
        if item.keyword != "ARG":
            continue
        try:
            words = shlex.split(item.args)
        except ValueError:
            words = item.args.split()
        for word in words:
            name, sep, default = word.partition("=")
            declared.setdefault(name, default if sep else None)
    return declared


def substitute(value: str, values: dict[str, str | None]) -> str:
    """``$NAME``, ``${NAME}`` and ``${NAME:-default}`` replaced as the builder does."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        found = values.get(name)
        if found:
            return found
        return match.group(2) or ""

    return _VARIABLE.sub(one, value)


def base_images(text: str, build_args: dict[str, str]) -> list[str]:
    """The image each FROM names, its args resolved (build args over ARG defaults).

    A FROM naming an earlier stage is left out: it is not an image of the engine.
    """
    values: dict[str, str | None] = {}
    stages: set[str] = set()
    images: list[str] = []
    seen_from = False
    for item in instructions(text):
        if item.keyword == "ARG" and not seen_from:
            # Only ARGs before the first FROM are visible to FROM lines.
            for name, default in declared_args(f"ARG {item.args}").items():
                values[name] = build_args.get(name, default)
        elif item.keyword == "FROM":
            seen_from = True
            words = [w for w in item.args.split() if not w.startswith("--")]
            if not words:
                continue
            image = substitute(words[0], values)
            if image and image.lower() not in stages:
                images.append(image)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
    return images
