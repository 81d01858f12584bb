"""Failures of the machine or the network that escape as library exceptions, as EnvironmentFailure sentences.

A dropped connection or a full disk is not a bug of ours, so it must not end as "internal error" (exit 70):
the CLI asks here for a sentence that names what failed and what to do, and exits 1.
"""

from __future__ import annotations

import errno
import sys

from .errors import EnvironmentFailure

_NETWORK_HINT = "check the network, any proxy settings and that the server is up, then try again"
_DISK_HINT = "free some space, or point COGBUILD_CACHE and COGBUILD_STORE at a larger disk"


def as_environment_failure(exc: BaseException) -> EnvironmentFailure | None:
    """The EnvironmentFailure `exc` stands for, or None when it is something else (maybe a bug)."""
    if _is_network_error(exc):
        return _wrapped(exc, f"a network request failed ({exc.__class__.__name__}: {_one_line(exc)}); "
                             f"{_NETWORK_HINT}")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _wrapped(exc, f"no space left to write {exc.filename or 'a file'}; {_DISK_HINT}")
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return _wrapped(exc, f"{exc.filename or 'a file'} is on a read-only file system; point COGBUILD_CACHE "
                             "and COGBUILD_STORE at a writable directory")
    if isinstance(exc, PermissionError) and exc.filename:
        return _wrapped(exc, f"permission denied on {exc.filename}; run as a user who may write there, or point "
                             "COGBUILD_CACHE and COGBUILD_STORE elsewhere")
    return None


def _is_network_error(exc: BaseException) -> bool:
    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    if "httpx" in sys.modules:  # only libraries already loaded can have raised; none is imported here
        kinds.append(sys.modules["httpx"].TransportError)
    if "requests" in sys.modules:
        kinds.append(sys.modules["requests"].exceptions.ConnectionError)
        kinds.append(sys.modules["requests"].exceptions.Timeout)
    return isinstance(exc, tuple(kinds))


def _wrapped(exc: BaseException, message: str) -> EnvironmentFailure:
    failure = EnvironmentFailure(message)
    failure.__cause__ = exc
    return failure


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
