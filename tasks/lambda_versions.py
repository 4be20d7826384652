"""Published Lambda versions: list them with their images, delete one.

Only `gangway prune` deletes a version, and only one its plan listed; $LATEST and the
function itself are never deleted here (a Qualifier is always sent).
"""

from __future__ import annotations

from typing import Any

from gangway.config import DeployConfig
from gangway.errors import AwsError
from tasks.aws import client
from tasks.lambda_read import LATEST, NOT_FOUND, call, missing_function


def list_versions(config: DeployConfig, name: str) -> dict[str, str | None]:
    """Every published version of function name (not $LATEST) → its image digest."""
    lam = client(config, "lambda")
    found: dict[str, str | None] = {}
    marker: str | None = None
    while True:
        page = call(
            lam.list_versions_by_function,
            "lambda:ListVersionsByFunction",
            name,
            {NOT_FOUND: missing_function(name)},
            FunctionName=name,
            **({"Marker": marker} if marker else {}),
        )
        for conf in page.get("Versions") or []:
            version = str(conf.get("Version", ""))
            if version and version != LATEST:
                sha = str(conf.get("CodeSha256") or "")
                # For an image function CodeSha256 is the image's manifest digest.
                found[version] = f"sha256:{sha}" if len(sha) == 64 else None
        marker = page.get("NextMarker")
        if not marker:
            return found


def delete_version(config: DeployConfig, name: str, version: str) -> bool:
    """Delete one published version of name; False when it was already gone."""
    if version == LATEST or not version:
        raise AwsError(
            f"refusing to delete {name}:{version or '(none)'}",
            expected="a published version number",
            found=version or "no qualifier",
            remedy="this is a bug in the prune plan: only published versions are deleted",
        )
    lam: Any = client(config, "lambda")
    gone = AwsError(f"{name}:{version} is gone", found=NOT_FOUND)
    try:
        call(
            lam.delete_function,
            "lambda:DeleteFunction",
            f"{name}:{version}",
            {NOT_FOUND: gone},
            FunctionName=name,
            Qualifier=version,
        )
    except AwsError as exc:
        if exc is gone:
            return False
        raise
    return True
