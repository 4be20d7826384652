"""Cold-start environment validation shared by every handler.

Each handler declares the variables it needs as a pydantic-settings class and loads it at
import time through ``load_settings``, so a misconfigured function fails on its first
(cold) invocation with one message naming every missing variable, never a silent default.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class TimezoneSettings(BaseSettings):
    """TZ, which every function needs: report dates are days in this zone."""

    # An empty value counts as missing: an empty DB_HOST is as broken as an absent one.
    model_config = SettingsConfigDict(
        case_sensitive=False, env_ignore_empty=True, extra="ignore", frozen=True
    )

    tz: str

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # glibc's ':Area/City' form names the same zone; the Lambda base images default TZ to
        # ':/etc/localtime', a file path, which is refused: reports need a named zone.
        name = value.removeprefix(":")
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "not an IANA time zone name such as Asia/Bangkok "
                "(left at the image default ':/etc/localtime'? tzdata missing?)"
            ) from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        """The configured zone."""
        return ZoneInfo(self.tz)

    def now(self) -> datetime:
        """The current time in the configured zone."""
        return datetime.now(self.zone)

    def today(self) -> date:
        """Today's date in the configured zone (the default report date)."""
        return self.now().date()


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every missing and every invalid variable, without their values."""
    missing: list[str] = []
    invalid: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        name = str(error["loc"][0]).upper() if error["loc"] else "?"
        if error["type"] == "missing":
            if name not in missing:
                missing.append(name)
        else:
            # pydantic's msg never embeds the input value; the input itself is excluded above.
            message = str(error["msg"]).removeprefix("Value error, ")
            invalid.append(f"{name} ({message})")
    parts = []
    if missing:
        parts.append("missing required environment variables: " + ", ".join(missing))
    if invalid:
        parts.append("invalid environment variables: " + "; ".join(invalid))
    return "; ".join(parts) or "invalid environment"


def load_settings(cls: type[S]) -> S:
    """Instantiate ``cls`` from the environment or raise one RuntimeError naming every problem."""
    try:
        return cls()
    except ValidationError as exc:
        # `from None`: pydantic's own rendering would repeat the offending input values.
        raise RuntimeError(describe_validation_error(exc)) from None
