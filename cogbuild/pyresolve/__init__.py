"""The Python half of `cogbuild lock`: pin wheels for the image's platform, never for this host.

- resolve_requirements: requirement lines → the pinned closure of wheels (pip resolves, see pip_runner)
- wheels_for_lockfile: a pip-compile lockfile with --hash lines → the one wheel per pin for the target
- export_requirements: Artifacts → pip-compile-style requirements text with --hash lines
"""

from .export import export_requirements
from .lockfile import wheels_for_lockfile
from .resolve import resolve_requirements
from .target import Target

__all__ = ["Target", "export_requirements", "resolve_requirements", "wheels_for_lockfile"]
