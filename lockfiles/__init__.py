"""pip-compiled lockfiles for what cogbuild puts into every image (package data)."""
