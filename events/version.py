"""asup's version: the one place it is written (pyproject.toml reads it from here), so the
CLI and the environment fingerprint need no package-metadata lookup at start-up."""

from __future__ import annotations

VERSION = "0.1.0"
