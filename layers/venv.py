"""A virtual environment inside an image: a prefix with its own site-packages over the image's interpreter.

What `python -m venv --without-pip` would write: pyvenv.cfg naming the interpreter's bin directory, and
bin/python links to it. The interpreter then finds its standard library through `home` and imports from
this prefix's site-packages only (include-system-site-packages = false), never from the system's.
"""

from __future__ import annotations

from .tree import Tree
from .wheel import PythonPaths


def add_virtual_env(tree: Tree, venv: PythonPaths, base: PythonPaths) -> None:
    """A venv at `venv.prefix` whose interpreter is `base`'s."""
    version = base.python_version
    config = f"home = /{base.home}/bin\ninclude-system-site-packages = false\n"
    tree.add_file(f"{venv.prefix}/pyvenv.cfg", config.encode(), 0o644)
    tree.add_symlink(f"{venv.prefix}/bin/python{version}", base.interpreter)
    tree.add_symlink(f"{venv.prefix}/bin/python3", f"python{version}")
    tree.add_symlink(f"{venv.prefix}/bin/python", f"python{version}")
    tree.add_dir(venv.site_packages)
