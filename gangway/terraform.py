"""What a service's ``terraform/`` folder declares for its Lambda functions, per environment.

gangway never runs Terraform: it reads the HCL (python-hcl2) and the environment's variable
file, and resolves only what it can know without Terraform. Where the folder exists, it is
the one declared source of the fields Terraform owns (timeout, memory, architecture, package
type, env values); gangway's configuration then declares only what the code needs.

Layout read: every ``terraform/*.tf``; one ``resource "aws_lambda_function" "<function key>"``
per function (the label is the key in deployments/service.toml); variable values from
``terraform/environments/<env>.tfvars``, else the variable's default. A ``sensitive``
variable is a secret: its value is what CI gives Terraform (``TF_VAR_<name>``) and gangway
reads it from ``GANGWAY_<ENV>_<NAME>`` as a ``${VAR}`` reference, never from a file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gangway.errors import ConfigError

FOLDER = "terraform"
VAR_FILES = "environments"
LAMBDA = "aws_lambda_function"
# The fields Terraform owns: a deployments/*.toml must not declare them as well.
OWNED_FIELDS = ("timeout", "memory", "architecture", "env")
READ = ("function_name", "timeout", "memory_size", "architectures", "package_type")
_REF = re.compile(r"\$\{\s*(var|local)\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}")
_WHOLE_REF = re.compile(r"^\$\{\s*(var|local)\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}$")


@dataclass(frozen=True)
class TerraformFunction:
    """One aws_lambda_function as declared for one environment (secrets as ``${VAR}``)."""

    key: str
    function_name: str | None
    timeout: int
    memory: int
    architecture: str
    package_type: str
    env: Mapping[str, str]
    secret_keys: frozenset[str] = frozenset()
    ignore_changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TerraformDeclaration:
    """Every Lambda function a terraform/ folder declares for one environment."""

    env: str
    folder: Path
    var_file: Path | None
    functions: Mapping[str, TerraformFunction] = field(default_factory=dict)

    def where(self, key: str) -> str:
        """e.g. 'terraform/*.tf resource aws_lambda_function.api (environments/dev.tfvars)'."""
        values = f" with {self.var_file.name}" if self.var_file else ""
        return f"{self.folder.name}/ resource {LAMBDA}.{key}{values}"


def folder(root: Path) -> Path | None:
    """The project's terraform/ folder, or None for a service without one."""
    path = root / FOLDER
    return path if path.is_dir() and any(path.glob("*.tf")) else None


def secret_variable(env: str, name: str) -> str:
    """The process variable holding a sensitive Terraform variable's value for env."""
    return f"GANGWAY_{env.upper().replace('-', '_')}_{name.upper().replace('-', '_')}"


def _load(path: Path) -> dict[str, Any]:
    stat = path.stat()
    # Parsing is the slow part (~2 s for 500 functions) and every environment reads the same
    # *.tf files: parsed once per file version, in this process.
    return _parsed(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parsed(name: str, _mtime_ns: int, _size: int) -> dict[str, Any]:
    import hcl2  # imported here: only services with a terraform/ folder need the parser

    path = Path(name)
    try:
        return dict(hcl2.loads(path.read_text()))
    except Exception as exc:  # the parser raises lark's many error types
        raise ConfigError(
            f"{path.name} is not valid HCL",
            expected="a Terraform file python-hcl2 can parse",
            found=f"{type(exc).__name__}: {str(exc)[:300]}",
            remedy=f"fix the syntax in {path} (`terraform validate`)",
        ) from exc


def _unquote(value: Any) -> Any:
    """python-hcl2 (v5+) keeps a string literal's quotes: '"x"' → 'x'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _label(value: str) -> str:
    return str(_unquote(value))


class _Scope:
    """Variables and locals of one environment, resolved on demand."""

    def __init__(
        self,
        env: str,
        variables: dict[str, dict[str, Any]],
        values: dict[str, Any],
        locals_: dict[str, Any],
        where: Path,
    ) -> None:
        self.env = env
        self.variables = variables
        self.values = values
        self.locals = locals_
        self.where = where
        self.secret_refs: set[str] = set()

    def _problem(self, what: str, expression: str, remedy: str) -> ConfigError:
        return ConfigError(
            f"terraform/ {what}",
            expected="literals, var.NAME or local.NAME (gangway reads Terraform, never runs it)",
            found=expression[:200],
            remedy=remedy,
        )

    def ref(self, kind: str, name: str, context: str) -> Any:
        if kind == "local":
            if name not in self.locals:
                raise self._problem(
                    f"{context} uses undeclared local.{name}",
                    name,
                    f"declare local.{name} in a locals block",
                )
            return self.resolve(self.locals[name], context)
        spec = self.variables.get(name)
        if spec is None:
            raise self._problem(
                f"{context} uses undeclared var.{name}",
                name,
                f'declare variable "{name}" in terraform/*.tf',
            )
        if spec.get("sensitive") is True:
            variable = secret_variable(self.env, name)
            self.secret_refs.add(variable)
            return "${" + variable + "}"
        if name in self.values:
            return self.resolve(self.values[name], context)
        if "default" in spec:
            return self.resolve(spec["default"], context)
        raise self._problem(
            f"{context}: var.{name} has no value for {self.env}",
            f"var.{name}",
            f"set {name} in {self.where} or give the variable a default",
        )

    def resolve(self, value: Any, context: str) -> Any:
        """A literal, a reference or an interpolated string, as gangway would see it."""
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, list):
            return [self.resolve(v, context) for v in value]
        if isinstance(value, dict):
            return {
                _label(k): self.resolve(v, f"{context}.{_label(k)}")
                for k, v in value.items()
                if k != "__is_block__"
            }
        text = str(value)
        whole = _WHOLE_REF.match(text)
        if whole:
            return self.ref(whole[1], whole[2], context)
        if text.startswith("${"):
            raise self._problem(
                f"{context} is an expression gangway cannot evaluate",
                text,
                f"write {context} as a literal or a plain var./local. reference",
            )
        literal = str(_unquote(text))

        def substitute(match: re.Match[str]) -> str:
            return str(self.ref(match[1], match[2], context))

        return _REF.sub(substitute, literal)


def _blocks(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [block for doc in documents for block in doc.get(kind, [])]


def read(root: Path, env: str) -> TerraformDeclaration | None:
    """The declaration of env in root's terraform/ folder (None: the service has none).
    ConfigError when it cannot be read or resolved, naming the file and the expression."""
    where = folder(root)
    if where is None:
        return None
    documents = [_load(path) for path in sorted(where.glob("*.tf"))]
    variables = {
        _label(name): {k: v for k, v in spec.items() if k != "__is_block__"}
        for block in _blocks(documents, "variable")
        for name, spec in block.items()
    }
    locals_: dict[str, Any] = {}
    for block in _blocks(documents, "locals"):
        locals_.update({k: v for k, v in block.items() if k != "__is_block__"})
    var_file = where / VAR_FILES / f"{env}.tfvars"
    if not var_file.is_file():
        raise ConfigError(
            f"terraform/ declares no values for environment {env!r}",
            expected=str(var_file),
            found="no such file",
            remedy=f"create {var_file.relative_to(root)} (the -var-file Terraform applies for "
            f"{env}); a service whose infrastructure Terraform declares needs one per environment",
        )
    values = {k: v for k, v in _load(var_file).items() if k != "__is_block__"}
    scope = _Scope(env, variables, values, locals_, var_file)
    functions: dict[str, TerraformFunction] = {}
    for block in _blocks(documents, "resource"):
        for kind, resources in block.items():
            if _label(kind) != LAMBDA:
                continue
            for label, body in resources.items():
                key = _label(label)
                functions[key] = _function(key, body, scope)
    return TerraformDeclaration(env=env, folder=where, var_file=var_file, functions=functions)


def _one(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name) or []
    return dict(blocks[0]) if blocks else {}


def _function(key: str, body: dict[str, Any], scope: _Scope) -> TerraformFunction:
    context = f"{LAMBDA}.{key}"
    # Only the attributes gangway compares: the rest (role, image_uri...) may be any expression.
    resolved = scope.resolve({k: v for k, v in body.items() if k in READ}, context)
    before = set(scope.secret_refs)
    variables = scope.resolve(
        _one(body, "environment").get("variables", {}), f"{context}.environment.variables"
    )
    if not isinstance(variables, dict):
        raise scope._problem(
            f"{context}.environment.variables is not a map",
            str(variables),
            "write environment { variables = { KEY = value } }",
        )
    env = {str(k): str(v) for k, v in variables.items()}
    secret_keys = frozenset(
        k
        for k, v in env.items()
        if any(r in v for r in scope.secret_refs - before) or "${GANGWAY_" in v
    )
    architectures = resolved.get("architectures") or ["x86_64"]
    ignore = _one(body, "lifecycle").get("ignore_changes") or []
    try:
        return TerraformFunction(
            key=key,
            function_name=resolved.get("function_name"),
            timeout=int(resolved.get("timeout", 3)),  # Terraform's (and Lambda's) defaults
            memory=int(resolved.get("memory_size", 128)),
            architecture=str(architectures[0]),
            package_type=str(resolved.get("package_type", "Zip")),
            env=env,
            secret_keys=secret_keys,
            ignore_changes=tuple(str(_unquote(i)) for i in ignore),
        )
    except (TypeError, ValueError) as exc:
        raise scope._problem(
            f"{context} has a timeout or memory_size that is not a number",
            str(exc),
            f"set {context}'s timeout / memory_size to numbers",
        ) from exc
