"""Domain errors: one type per boundary, each saying what was expected, found, and the remedy."""

from __future__ import annotations


class GangwayError(Exception):
    """Base of every error gangway shows a user; never a bare traceback."""

    boundary: str = "gangway"

    def __init__(
        self, message: str, *, expected: str = "", found: str = "", remedy: str = ""
    ) -> None:
        self.message = message
        self.expected = expected
        self.found = found
        self.remedy = remedy
        super().__init__(self.render())

    def render(self) -> str:
        """The full message: what happened, what was expected and found, and what to do."""
        parts = [f"[{self.boundary}] {self.message}"]
        if self.expected:
            parts.append(f"  expected: {self.expected}")
        if self.found:
            parts.append(f"  found:    {self.found}")
        if self.remedy:
            parts.append(f"  remedy:   {self.remedy}")
        return "\n".join(parts)


class ConfigError(GangwayError):
    """The deployment configuration or a required setting is missing or invalid."""

    boundary = "config"


class DockerError(GangwayError):
    """The Docker engine refused or failed a build, run or push."""

    boundary = "docker"


class ImageGateError(GangwayError):
    """The built image does not carry what its functions need (handlers, runtime, arch)."""

    boundary = "process"


class RegistryError(GangwayError):
    """The OCI registry did not hold or return what was expected."""

    boundary = "registry"


class DatabaseError(GangwayError):
    """The database could not be reached, migrated, or does not match the code's contract."""

    boundary = "data"


class AwsError(GangwayError):
    """An AWS API call failed (permissions, missing resource, throttling after retries)."""

    boundary = "aws"


class StackError(GangwayError):
    """The rehearsal stack could not be provisioned or a daemon did not come up."""

    boundary = "stack"
