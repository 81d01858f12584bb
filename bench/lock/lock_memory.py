"""Benchmark: peak RSS of `cogbuild lock` from nothing (no cog.lock, empty COGBUILD_CACHE), issue #15.

    .venv/bin/python bench/lock/lock_memory.py [MODEL_DIR]    # default examples/hello; cold, then warm
    .venv/bin/python bench/lock/lock_memory.py --quick        # the cold lock only

A cold lock fetches and parses three Debian archives' indexes and resolves the Python requirements; the
peak is wait4's ru_maxrss: the largest of `cogbuild lock` and the children it waited for (pip, uv).
The warm lock runs again with the cache kept and cog.lock removed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench" / "build"))

from bench_build import model_env, run  # noqa: E402

BUDGET_MB = 300  # issue #15


def lock(model: Path, work: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `cogbuild lock` of `model`, with no cog.lock beside it."""
    (model / "cog.lock").unlink(missing_ok=True)
    measured = run([sys.executable, "-m", "cogbuild", "lock"], model, model_env(work))
    return measured.wall, measured.peak_rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=REPO / "examples" / "hello")
    parser.add_argument("--quick", action="store_true", help="the cold lock only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cogbuild-bench-") as tmp:
        work = Path(tmp)
        model = work / "model"
        shutil.copytree(args.model, model, ignore=shutil.ignore_patterns("cog.lock", ".cogbuild"))
        runs = [("cold (empty cache)", lock(model, work))]
        if not args.quick:
            runs.append(("warm (cache kept)", lock(model, work)))
    print(f"cogbuild lock of {args.model.name} (budget {BUDGET_MB} MB peak RSS)")
    for label, (wall, peak_rss) in runs:
        print(f"  {label:20} peak RSS {peak_rss:5.0f} MB   {wall:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
