"""The project a command was asked about: `--project`, else $GANGWAY_PROJECT, else None."""

from __future__ import annotations

import argparse
import os


def requested_project(args: argparse.Namespace) -> str | None:
    """The project the flows are told of (None: gangway.config.project_root decides)."""
    return getattr(args, "project", None) or os.environ.get("GANGWAY_PROJECT") or None
