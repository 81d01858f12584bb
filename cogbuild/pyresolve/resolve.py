"""resolve_requirements: Cog's python_requirements → pinned wheels for the image's platform.

uv is started before the rest of the resolver is loaded. When uv may resolve the lines (wheels from
indexes: see uv_runner) and no earlier resolution of them is stored, it starts here, from the lines alone.
The heavy half (resolution.py: packaging, the index client, the proxy uv reads through; 0.1 s of imports)
then loads during uv's own start-up (0.15 s). So this module, like the package's __init__, imports little.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

from ..artifacts import Artifact
from ..requirement_paths import names_a_source
from . import reqfile
from .target import Target
from .uv_runner import UvResolution, usable_uv


def resolve_requirements(requirements: Sequence[str], target: Target, *, index_url: str | None = None,
                         extra_index_urls: Iterable[str] = (), find_links: Iterable[str] = (),
                         allow_sdist: bool = False, constraints: Sequence[str] = (),
                         project_root: Path | None = None, proxy: bool = True, uv: bool = True,
                         cache_root: Path | None = None) -> list[Artifact]:
    """Pin the closure of `requirements` (lines of a requirements file) to wheels for `target`.

    Options inside the lines (--index-url, --extra-index-url, --find-links, --hash) are honoured as pip
    honours them. With allow_sdist, a project that has only a source distribution joins the lock (as kind
    "sdist"): its dependencies come from its PKG-INFO when declared statically (PEP 643), else from its
    build backend run on this host (backend.py), the only package code locking ever runs. With
    project_root, lines may name a wheel or an sdist in the project (see requirement_paths.py); a
    `git+…@<commit>` line is pinned as an sdist of that commit's tree (see gitsource.py). With proxy
    (COGBUILD_PIP_PROXY, on unless 0), pip reads indexes through the metadata proxy. Wheel metadata, uv's
    cache and its resolutions are kept under `cache_root` (Settings.cache_root) for later runs; without one,
    for this call only. Returns Artifacts sorted by name.
    """
    text = "\n".join(requirements)
    parsed = reqfile.parse(text)
    find_links = [*find_links, *parsed.find_links]
    index_urls = reqfile.index_urls(parsed, index_url, extra_index_urls)
    with tempfile.TemporaryDirectory(prefix="cogbuild-pyresolve-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        keep_in = cache_root or workdir  # without a cache root, nothing outlives this call
        # As pip and uv read the lines: the indexes are passed to them apart (through the proxy).
        requirements_file = workdir / "requirements.txt"
        requirements_file.write_text(reqfile.without_index_options(text) + "\n")
        constraints_file = None
        if constraints:
            constraints_file = workdir / "constraints.txt"
            constraints_file.write_text("\n".join(constraints) + "\n")
        by_uv = None
        binary = usable_uv(target) if uv and parsed.requirements and _wheels_from_indexes(parsed, find_links) else None
        if binary is not None:
            by_uv = stack.enter_context(UvResolution(binary, target, requirements_file, constraints_file, workdir,
                                                     index_urls=index_urls, cache_root=keep_in))
        from .resolution import resolve  # the heavy half: loaded while uv starts up

        return resolve(parsed, text, target, workdir, requirements_file, constraints_file, index_urls=index_urls,
                       find_links=find_links, allow_sdist=allow_sdist, project_root=project_root, proxy=proxy,
                       uv=by_uv, cache_root=keep_in)


def _wheels_from_indexes(parsed: reqfile.RequirementsText, find_links: list[str]) -> bool:
    """Lines whose closure uv may resolve (see uv_runner): no find-links, project files or git commits to
    pin, no --hash lines to honour, no other pip options."""
    return not (find_links or parsed.other_options or
                any(line.hashes or names_a_source(line.text) for line in parsed.requirements))
