"""The error family the CLI turns into one sentence and an exit code (defined in layers/errors.py, so
layers/ and registry/ raise the same classes without importing cogbuild)."""

from .layers.errors import CogbuildError, CogUsageError, EnvironmentFailure, UsageError

__all__ = ["CogbuildError", "CogUsageError", "EnvironmentFailure", "UsageError"]
