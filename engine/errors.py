"""Errors auflow raises. Each says what went wrong and what to do next.

All derive from :class:`AuflowError`, so the CLI can print one clear line for any of them and
exit non-zero, while a programming error (anything else) still shows its traceback.
"""

from __future__ import annotations


class AuflowError(Exception):
    """Base of every error auflow raises on purpose."""

    #: process exit status the CLI uses for this kind of error
    exit_code: int = 1


class ConfigError(AuflowError):
    """A configuration file or override is malformed: unknown key, bad value, bad YAML."""

    exit_code = 2


class SourceError(AuflowError):
    """A video source cannot be opened or read: missing file, not a video, dead camera."""

    exit_code = 3


class ModelError(AuflowError):
    """A model cannot be built or loaded: unknown name, missing or mismatched weights."""

    exit_code = 4


class AssetError(ModelError):
    """A file auflow loads (weights, demo video) is missing or its sha256 differs."""


class RegistryError(AuflowError):
    """An unknown name was looked up in a registry, or a name was registered twice."""

    exit_code = 2


class WireError(AuflowError):
    """A message on the wire is malformed or of an unsupported schema version."""
