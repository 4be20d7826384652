"""What an AWS SAM ``template.yaml`` and a Dockerfile say about a service's image functions.

Pure reading, no writing: `gangway init` (gangway/scaffold.py) turns it into configuration.
CloudFormation's intrinsic functions (``!Ref``, ``!Sub``, ``Fn::GetAtt`` …) are kept as
`Intrinsic` values, never evaluated: a value gangway cannot know before deploy stays unknown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gangway.config import refuse_large
from gangway.dockerfile import last_stage_cmd
from gangway.errors import ConfigError

MAX_TEMPLATE_BYTES = 1 << 20  # CloudFormation's own limit for a template body (from S3)
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
DATABASE_TYPES = ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster")


@dataclass(frozen=True)
class Intrinsic:
    """A CloudFormation intrinsic function (``!Ref X`` or ``{"Ref": "X"}``), not evaluated."""

    name: str  # "Ref", "Fn::Sub", "Fn::GetAtt", …
    value: Any

    def __str__(self) -> str:
        return f"{self.name} {json.dumps(self.value, default=str)}"


@dataclass(frozen=True)
class SamFunction:
    """One image function of the template, its properties merged over Globals.Function."""

    logical_id: str
    key: str
    context: str  # Metadata.DockerContext, relative to the template's folder
    dockerfile: str  # Metadata.Dockerfile, relative to the context
    command: Any  # ImageConfig.Command[0], or None
    timeout: Any
    memory: Any
    architectures: Any
    function_name: Any
    env: dict[str, Any]  # Environment.Variables, Globals' merged under the function's
    global_env_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SamTemplate:
    """The parts of a SAM template that describe a gangway service."""

    path: Path
    functions: tuple[SamFunction, ...]
    skipped: tuple[str, ...]  # why each other function was ignored
    parameter_defaults: dict[str, Any]
    buckets: tuple[str, ...]  # logical ids of AWS::S3::Bucket resources
    databases: tuple[str, ...]  # logical ids of RDS instances/clusters


@dataclass(frozen=True)
class DockerCmd:
    """The first argument of a Dockerfile's effective CMD: a Lambda image's handler."""

    handler: str
    line: int
    shell_form: bool


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that keeps ``!Tag value`` as an Intrinsic instead of refusing the tag."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Intrinsic:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    name = suffix if suffix == "Ref" or suffix == "Condition" else f"Fn::{suffix}"
    return Intrinsic(name, value)


_TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def intrinsic(value: Any) -> Intrinsic | None:
    """value as an Intrinsic: a short-form tag, or the long form ``{"Ref": …}``/``{"Fn::X": …}``."""
    if isinstance(value, Intrinsic):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((name, inner),) = value.items()
        if name == "Ref" or (isinstance(name, str) and name.startswith("Fn::")):
            return Intrinsic(name, inner)
    return None


def function_key(logical_id: str) -> str:
    """gangway's function key for a logical id: snake_case, without a trailing "Function"."""
    stem = logical_id[: -len("Function")] if logical_id.endswith("Function") else logical_id
    stem = stem or logical_id
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem)
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_") or "function"


def _mapping(value: Any, where: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path.name}: {where} is not a mapping",
            expected=f"{where} as a YAML mapping (key: value)",
            found=type(value).__name__,
            remedy=f"fix {where} in {path}",
        )
    return value


def load_template(path: Path) -> SamTemplate:
    """Read a SAM template's image functions and the resources gangway cares about."""
    if not path.is_file():
        raise ConfigError(
            "no SAM template",
            expected=f"a template at {path}",
            found="no such file",
            remedy="pass --template PATH, or answer with flags (--name, --function …)",
        )
    refuse_large(
        path, MAX_TEMPLATE_BYTES, "to be a SAM template", "CloudFormation's limit",
        f"is {path} the right file? pass --template PATH",
    )
    try:
        # A SafeLoader subclass: only plain data and the Intrinsic values.
        document = yaml.load(path.read_text(), Loader=_TemplateLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path.name} is not valid YAML",
            expected="a SAM template (YAML)",
            found=str(exc).replace("\n", " "),
            remedy=f"fix the syntax in {path}",
        ) from exc
    document = _mapping(document, "the document", path)
    resources = _mapping(document.get("Resources"), "Resources", path)
    globals_fn = _mapping(
        _mapping(document.get("Globals"), "Globals", path).get("Function"),
        "Globals.Function",
        path,
    )
    defaults = {
        name: spec["Default"]
        for name, spec in _mapping(document.get("Parameters"), "Parameters", path).items()
        if isinstance(spec, dict) and "Default" in spec
    }
    functions: list[SamFunction] = []
    skipped: list[str] = []
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") not in FUNCTION_TYPES:
            continue
        props = _mapping(resource.get("Properties"), f"Resources.{logical_id}.Properties", path)
        serverless = resource["Type"] == "AWS::Serverless::Function"
        merged = {**globals_fn, **props} if serverless else dict(props)
        if merged.get("PackageType") != "Image":
            skipped.append(
                f"{logical_id}: PackageType is {merged.get('PackageType') or 'Zip (the default)'}"
                ", not Image: gangway deploys container images only; ignored"
            )
            continue
        metadata = _mapping(resource.get("Metadata"), f"Resources.{logical_id}.Metadata", path)
        global_vars = _variables(globals_fn) if serverless else {}
        own_vars = _variables(props)
        command = _mapping(merged.get("ImageConfig"), f"{logical_id}.ImageConfig", path).get(
            "Command"
        )
        functions.append(
            SamFunction(
                logical_id=str(logical_id),
                key=function_key(str(logical_id)),
                context=str(metadata.get("DockerContext") or "."),
                dockerfile=str(metadata.get("Dockerfile") or "Dockerfile"),
                command=command[0] if isinstance(command, list) and command else None,
                timeout=merged.get("Timeout"),
                memory=merged.get("MemorySize"),
                architectures=merged.get("Architectures"),
                function_name=props.get("FunctionName"),
                env={**global_vars, **own_vars},
                global_env_keys=frozenset(k for k in global_vars if k not in own_vars),
            )
        )
    return SamTemplate(
        path=path,
        functions=tuple(functions),
        skipped=tuple(skipped),
        parameter_defaults=defaults,
        buckets=tuple(str(k) for k, r in resources.items() if _type(r) == "AWS::S3::Bucket"),
        databases=tuple(str(k) for k, r in resources.items() if _type(r) in DATABASE_TYPES),
    )


def _type(resource: Any) -> Any:
    return resource.get("Type") if isinstance(resource, dict) else None


def _variables(props: dict[str, Any]) -> dict[str, Any]:
    environment = props.get("Environment")
    variables = environment.get("Variables") if isinstance(environment, dict) else None
    return {str(k): v for k, v in variables.items()} if isinstance(variables, dict) else {}


def dockerfile_cmd(text: str) -> DockerCmd | None:
    """The first CMD argument the final stage runs (inherited from an earlier stage it builds
    FROM), or None when the Dockerfile sets none (the base image's CMD applies)."""
    found = last_stage_cmd(text)
    if found.line is None or not found.command:
        return None
    if not found.json_form:
        # Shell form: the first word the shell would run, which is what a reader means.
        words = found.command[-1].split()
        return DockerCmd(words[0], found.line, True) if words else None
    return DockerCmd(found.command[0], found.line, False)
