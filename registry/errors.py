"""Failures of OCI operations that a user must act on; the CLI prints the message as one sentence.

They belong to the one error family (layers/errors.py), so the CLI needs no list of roots.
"""

from __future__ import annotations

import json

from cogbuild.layers.errors import CogbuildError, UsageError


class OCIError(CogbuildError):
    """A user-facing failure: the message names the registry, repository, file or reference at fault."""

    exit_code = 1


class InvalidReference(OCIError, UsageError):
    """An image reference that cannot be parsed (bad input from the user)."""

    exit_code = 2


class RegistryError(OCIError):
    """A registry said no, or could not be reached; the message says which and what to do."""

    def __init__(self, message: str, status: int | None = None, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes  # the OCI error codes of the answer, e.g. ("MANIFEST_BLOB_UNKNOWN",)


def refusal(registry: str, repository: str, action: str, status: int, reason: str, body: bytes, *,
            has_credentials: bool, attempts: int = 1) -> RegistryError:
    """A registry's refusal as one sentence: what was tried, where, why, and what the user can do.

    `action` completes "could not … " (e.g. "push blob sha256:… to"); `body` is the answer's body, whose OCI
    error list (if any) is quoted. Both registry clients (client.py, light.py) answer with this.
    """
    where = f"{registry}/{repository}" if repository else registry
    errors = _error_list(body)
    detail = "; ".join(p for p in (f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
                       if p)[:300]
    detail = f" ({detail})" if detail else ""
    if status == 401:
        if has_credentials:
            text = (f"registry {registry} rejected the stored credentials when trying to {action} "
                    f"{where}{detail}; run `cogbuild login {registry}` again")
        else:
            text = (f"registry {registry} needs credentials to {action} {where}{detail}; "
                    f"run `cogbuild login {registry}` first")
    elif status == 403:
        text = (f"registry {registry} denied permission to {action} {where}{detail}; "
                "check that your account may use this repository")
    elif status == 404:
        text = f"could not {action} {where}: not found{detail}; check the repository name and tag"
    elif status == 429:
        text = (f"registry {registry} kept rate-limiting requests to {action} {where} "
                f"after {attempts} tries; wait a while and run the command again")
    elif status >= 500:
        text = (f"registry {registry} failed with {status} {reason} when trying to {action} "
                f"{where} after {attempts} tries{detail}; try again later")
    else:
        text = f"registry {registry} refused to {action} {where}: {status} {reason}{detail}"
    return RegistryError(text, status, tuple(str(e["code"]) for e in errors if e.get("code")))


def _error_list(body: bytes) -> list[dict]:
    """The `errors` of an OCI error body, or nothing."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
