"""Reading Lambda for the drift check: each function's configuration, alias and routed images.

Two reads, both through one client in botocore's adaptive retry mode (tasks/aws.py's
"adaptive" profile): the $LATEST configuration of every function of the region from
ListFunctions (paginated: one request per 50 functions instead of one per function), then per
batch of functions, by a bounded thread pool, each alias (GetAlias: version and weights) and
the image of each version it routes to (GetFunction of that version). Env values are hashed
with the run's key as they are read: only the keys named plain keep their value (the
non-secret ones, for the report). A function the listing does not hold does not exist (None:
drift); any other failure (the endpoint down, throttled past every retry, access denied)
raises AwsError: the environment could not be checked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gangway.config import DeployConfig
from gangway.errors import AwsError
from tasks import lambda_read
from tasks.aws import aws_error, client
from tasks.drift_compare import LiveLambda, keyed_hash

NO_ALIAS = "(no alias)"
THREADS = 16  # requests in flight per batch; the flow bounds how many batches run at once


@dataclass(frozen=True)
class Latest:
    """A function's $LATEST configuration as the comparison needs it (env values hashed)."""

    name: str
    package_type: str
    timeout: int
    memory: int
    architectures: tuple[str, ...]
    env_hashes: Mapping[str, str]
    env_plain: Mapping[str, str]
    # Every published version's image digest, from the same listing (FunctionVersion=ALL).
    digests: Mapping[str, str] = field(default_factory=dict)


def digest_of(code_sha256: str, resolved_image_uri: str) -> str:
    """The image digest a version runs: ResolvedImageUri's, else CodeSha256 as sha256:<hex>."""
    if "@" in resolved_image_uri:
        return resolved_image_uri.rpartition("@")[2]
    if code_sha256 and not code_sha256.startswith("sha256:"):
        return f"sha256:{code_sha256}"
    return code_sha256


def latest_of(conf: Mapping[str, Any], hash_key: bytes, plain: Collection[str]) -> Latest:
    """A FunctionConfiguration (ListFunctions / GetFunction) with its env values hashed."""
    env = lambda_read.env_of(conf)
    return Latest(
        name=str(conf["FunctionName"]),
        package_type=conf.get("PackageType", "Zip"),
        timeout=int(conf.get("Timeout", 0)),
        memory=int(conf.get("MemorySize", 0)),
        architectures=tuple(conf.get("Architectures") or ("x86_64",)),
        env_hashes={k: keyed_hash(hash_key, v) for k, v in env.items()},
        env_plain={k: v for k, v in env.items() if k in plain},
    )


def list_latest(
    config: DeployConfig,
    names: Mapping[str, str],
    hash_key: bytes,
    plain: Mapping[str, frozenset[str]],
) -> dict[str, Latest]:
    """The $LATEST configuration and every version's image digest of each function in names
    (key → function name) that exists, from ListFunctions with FunctionVersion=ALL (every
    page: one request per 50 versions instead of one per function and version); AwsError
    when the listing fails. A container image's CodeSha256 is its manifest digest."""
    lam = client(config, "lambda", profile="adaptive")
    wanted = {name: key for key, name in names.items()}
    found: dict[str, Latest] = {}
    digests: dict[str, dict[str, str]] = {}
    try:
        # $LATEST only: FunctionVersion=ALL would give every version's digest in the same
        # pages, but the rehearsal's moto builds that answer unpaginated (> 60 s for 1,500
        # functions); the routed versions' images are read per function instead.
        for page in lam.get_paginator("list_functions").paginate():
            for conf in page.get("Functions", []):
                key = wanted.get(conf.get("FunctionName", ""))
                if key is None:
                    continue
                version = str(conf.get("Version", lambda_read.LATEST))
                if version == lambda_read.LATEST:
                    found[key] = latest_of(conf, hash_key, plain.get(key, frozenset()))
                else:
                    digests.setdefault(key, {})[version] = digest_of(conf.get("CodeSha256", ""), "")
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, "lambda:ListFunctions", config.environment.aws.region) from exc
    return {key: replace(latest, digests=digests.get(key, {})) for key, latest in found.items()}


def _image(response: Mapping[str, Any]) -> str:
    conf = response["Configuration"]
    resolved = response.get("Code", {}).get("ResolvedImageUri", "")
    return digest_of(conf.get("CodeSha256", ""), resolved)


def read_function(lam: Any, key: str, alias: str, latest: Latest | None) -> LiveLambda | None:
    """One function now: its alias and the image of each version the alias routes to."""
    if latest is None:
        return None
    try:
        state = lambda_read.get_alias(lam, alias, latest.name)
    except AwsError as exc:
        if exc.found != lambda_read.NOT_FOUND:
            raise
        # No alias (deleted by hand, or the function was just recreated): nothing routes to
        # a version the ledger knows; the comparison reports it as the pipeline's.
        state = lambda_read.AliasState(name=alias, version=NO_ALIAS)
    routed = (state.version, *state.weights)
    digests = {
        # A version published after the listing is read on its own.
        version: latest.digests.get(version)
        or _image(lambda_read.get_function(lam, latest.name, version))
        for version in routed
        if version not in (lambda_read.LATEST, NO_ALIAS)
    }
    return LiveLambda(
        key=key,
        name=latest.name,
        package_type=latest.package_type,
        timeout=latest.timeout,
        memory=latest.memory,
        architectures=latest.architectures,
        env_hashes=latest.env_hashes,
        env_plain=latest.env_plain,
        alias_version=state.version,
        weights=dict(state.weights),
        digests=digests,
    )


def read_batch(
    config: DeployConfig,
    keys: Sequence[str],
    latest: Mapping[str, Latest],
    threads: int = THREADS,
) -> dict[str, LiveLambda | None]:
    """The aliases and routed images of keys, read concurrently (None: no such function);
    the first failure raises AwsError."""
    lam = client(config, "lambda", profile="adaptive")
    alias = config.environment.alias

    def one(key: str) -> LiveLambda | None:
        return read_function(lam, key, alias, latest.get(key))

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(keys)))) as pool:
        found = list(pool.map(one, keys))
    return dict(zip(keys, found, strict=True))
