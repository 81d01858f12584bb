"""The Python half of `cogbuild lock`: pin wheels for the image's platform, never for this host.

- resolve_requirements: requirement lines → the pinned closure of wheels (uv resolves, else pip: see
  uv_runner and pip_runner), with sdists and the project's own files where allowed (sdist.py, backend.py, ../requirement_paths.py)
- wheels_for_lockfile: a pip-compile lockfile with --hash lines → the one wheel per pin for the target
- export_requirements: Artifacts → pip-compile-style requirements text with --hash lines

Map: target.py (the image's tags and markers) · uv_runner.py (uv as the resolver) · pip_runner.py +
_pip_shim.py (pip as the resolver) · metadata_proxy.py + lazywheel.py (METADATA for pip, fast) · index.py (PEP 691/503 pages, find-links) ·
pinning.py (exact URL/sha256/size, required_by) · diagnose.py (one-sentence errors) · sdist.py (PEP 643)
· reqfile.py (requirements text) · lockfile.py · export.py. `python -m cogbuild.pyresolve` for debugging.
"""

from .export import export_requirements
from .lockfile import wheels_for_lockfile
from .resolve import check_requirements, resolve_requirements
from .target import Target

__all__ = ["Target", "check_requirements", "export_requirements", "resolve_requirements", "wheels_for_lockfile"]
