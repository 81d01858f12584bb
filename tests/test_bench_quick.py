"""Every benchmark under bench/ still runs: each one's --quick mode (small sizes, no speed assertions).

A bench that imports a moved helper or calls a changed API fails here instead of rotting until someone
needs its numbers. The timings they print are not checked; that they run to the end and print is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from components import require

REPO = Path(__file__).resolve().parents[1]
# script -> what it needs from the machine
BENCHES = {
    "bench/build/bench_build.py": ("tar", "gzip"),
    "bench/cache/bench_cache.py": ("docker-registry",),
    "bench/cli/bench_startup.py": (),
    "bench/cli/bench_predict.py": (),
    "bench/cli/bench_batch.py": (),
    "bench/push/bench_push.py": ("skopeo", "docker-registry"),
    "bench/runtime/bench_server.py": (),
    "bench/runtime/soak.py": (),
    "bench/runtime/cog_txtar.py": (),
    "bench/lock/python_lock.py": (),
    "bench/lock/debian_closure.py": ("apt-get",),
    "bench/lock/lock_memory.py": (),
}
# Reach PyPI or Debian's archive (the runtime bench installs Cog's own server, once, to compare with; the
# cache bench locks and builds examples/hello).
NEEDS_NETWORK = {"bench/runtime/bench_server.py", "bench/lock/python_lock.py", "bench/lock/debian_closure.py",
                 "bench/cache/bench_cache.py", "bench/lock/lock_memory.py"}


def test_every_bench_script_is_listed():
    assert {str(p.relative_to(REPO)) for p in REPO.glob("bench/*/*.py")} == set(BENCHES)


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.network) if s in NEEDS_NETWORK else s
                                    for s in BENCHES])
def test_bench_quick_mode_runs_to_the_end(script, tmp_path):
    if BENCHES[script]:
        require(*BENCHES[script])
    done = subprocess.run([sys.executable, str(REPO / script), "--quick"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{script} --quick printed no result"
