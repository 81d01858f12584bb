"""Failures of OCI operations that a user must act on; the CLI prints the message as one sentence.

They belong to the one error family (layers/errors.py), so the CLI needs no list of roots.
"""

from __future__ import annotations

from cogbuild.layers.errors import CogbuildError, UsageError


class OCIError(CogbuildError):
    """A user-facing failure: the message names the registry, repository, file or reference at fault."""

    exit_code = 1


class InvalidReference(OCIError, UsageError):
    """An image reference that cannot be parsed (bad input from the user)."""

    exit_code = 2
