"""The Python half of `cogbuild lock`: pin wheels for the image's platform, never for this host.

- resolve_requirements: requirement lines → the pinned closure of wheels (uv resolves, else pip: see
  uv_runner and pip_runner), with sdists and the project's own files where allowed (sdist.py, backend.py, ../requirement_paths.py)
- wheels_for_lockfile: a pip-compile lockfile with --hash lines → the one wheel per pin for the target
- export_requirements: Artifacts → pip-compile-style requirements text with --hash lines

Map: resolve.py (starts uv, then loads resolution.py: the lines checked, uv's or pip's closure, pinned) ·
target.py (the image's tags and markers) · uv_runner.py (uv as the resolver) · pip_runner.py +
_pip_shim.py (pip as the resolver) · metadata_proxy.py + lazywheel.py (METADATA for pip, fast) · index.py (PEP 691/503 pages, find-links) ·
pinning.py (exact URL/sha256/size, required_by) · diagnose.py (one-sentence errors) · sdist.py (PEP 643)
· reqfile.py (requirements text) · lockfile.py · export.py. `python -m cogbuild.pyresolve` for debugging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .export import export_requirements
    from .lockfile import wheels_for_lockfile
    from .resolution import check_requirements
    from .resolve import resolve_requirements
    from .target import Target

__all__ = ["Target", "check_requirements", "export_requirements", "resolve_requirements", "wheels_for_lockfile"]

# Each name is loaded on first use: importing resolve_requirements must not load what it loads only after
# starting uv (see resolve.py).
_MODULES = {"Target": "target", "check_requirements": "resolution", "export_requirements": "export",
            "resolve_requirements": "resolve", "wheels_for_lockfile": "lockfile"}


def __getattr__(name: str) -> object:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_MODULES[name]}", __name__), name)
    globals()[name] = value
    return value
