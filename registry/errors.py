"""Failures of OCI operations that a user must act on; the CLI prints the message as one sentence.

registry/ knows OCI, not cogbuild, so it has its own error types; they carry an exit code like
cogbuild's own errors do.
"""

from __future__ import annotations


class OCIError(Exception):
    """A user-facing failure: the message names the registry, repository, file or reference at fault."""

    exit_code = 1


class InvalidReference(OCIError):
    """An image reference that cannot be parsed (bad input from the user)."""

    exit_code = 2
