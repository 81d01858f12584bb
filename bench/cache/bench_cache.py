"""The registry as a shared build cache: a fresh runner against a warm cache repository, vs a warm and a
cold local build of the same model, in one run (ratios only; absolute times vary by machine).

- cold:          empty download cache, layer cache and store; no cache repository (downloads + composition)
- warm local:    the same machine building again (every layer cached locally)
- fresh runner:  empty download cache, layer cache and store; `--cache` names a repository a warm runner
                 filled (a docker-registry on loopback)

"bytes from upstream" is what landed in the run's download cache: every file fetched from PyPI, Debian or
a --find-links directory goes there (a fresh runner's layer hits download nothing at all).
Goal: the fresh runner within 1.5x of the warm local build, 0 bytes from upstream.

    .venv/bin/python bench/cache/bench_cache.py [--torch-wheel-dir /opt/wheels]   # hello and a torch CPU model
    .venv/bin/python bench/cache/bench_cache.py --quick                         # examples/hello only
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

sys.path.insert(0, str(REPO / "bench" / "build"))

from bench_build import torch_model  # noqa: E402  (the same torch CPU model the build bench uses)
from oci_registry_server import RegistryServer  # noqa: E402  (the tests' real-registry helper)

REPEATS = 2


def runner_env(home: Path) -> dict[str, str]:
    """A machine of its own: download/layer cache and store under `home`."""
    env = {k: v for k, v in os.environ.items() if k != "COGBUILD_CACHE_REPO"}
    return {**env, "COGBUILD_CACHE": str(home / "cache"), "COGBUILD_STORE": str(home / "store")}


def timed_build(model: Path, env: dict[str, str], *extra: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cogbuild", "-q", "build", "-t", "bench:latest", *extra],
                          cwd=model, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout.strip()


def upstream_bytes(home: Path) -> int:
    blobs = home / "cache" / "blobs" / "sha256"
    return sum(p.stat().st_size for p in blobs.iterdir() if p.is_file()) if blobs.is_dir() else 0


def bench_model(label: str, model: Path, work: Path, registry: RegistryServer) -> None:
    subprocess.run([sys.executable, "-m", "cogbuild", "-q", "lock"], cwd=model, env=runner_env(work / "locker"),
                   check=True, capture_output=True)  # resolving is not what this bench measures
    cold_home, fresh_home = work / "cold", work / "fresh"
    cache = ["--cache", f"{registry.host}/bench/{label}-cache"]
    cold, digest = timed_build(model, runner_env(cold_home))
    cold_bytes = upstream_bytes(cold_home)
    seed, _ = timed_build(model, runner_env(cold_home), *cache)  # a warm runner fills the cache repository
    # Best of REPEATS for the two fast builds: on a shared machine one run can catch a busy moment.
    warm_runs = [timed_build(model, runner_env(cold_home)) for _ in range(REPEATS)]
    fresh_runs = [timed_build(model, runner_env(fresh_home / str(i)), *cache) for i in range(REPEATS)]
    digests = {digest} | {d for _, d in warm_runs + fresh_runs}
    if len(digests) != 1:
        raise SystemExit(f"{label}: the builds disagree: {sorted(digests)}")
    warm, fresh = min(t for t, _ in warm_runs), min(t for t, _ in fresh_runs)
    fresh_bytes = max(upstream_bytes(fresh_home / str(i)) for i in range(REPEATS))
    print(f"{label}: image {digest}")
    print(f"  cold build                    {cold:7.2f} s   {cold_bytes / 1e6:8.1f} MB from upstream")
    print(f"  warm runner filling the cache {seed:7.2f} s")
    print(f"  warm local build              {warm:7.2f} s   {0:8.1f} MB from upstream")
    print(f"  fresh runner, warm cache repo {fresh:7.2f} s   {fresh_bytes / 1e6:8.1f} MB from upstream "
          f"({fresh_bytes} bytes)")
    ratio = fresh / warm
    print(f"  fresh runner / warm local = {ratio:.2f}x (goal <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}); "
          f"cold / fresh runner = {cold / fresh:.1f}x; "
          f"0 bytes from upstream: {'met' if fresh_bytes == 0 else 'NOT met'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-wheel-dir", default="/opt/wheels")
    parser.add_argument("--quick", action="store_true", help="examples/hello only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cogbuild-bench-cache-") as tmp:
        work = Path(tmp)
        registry = RegistryServer(work / "registry").start()
        try:
            hello = work / "hello"
            shutil.copytree(REPO / "examples" / "hello", hello, ignore=shutil.ignore_patterns("cog.lock"))
            bench_model("hello", hello, work / "hello-work", registry)
            if args.quick:
                return
            found = torch_model(work / "torch-model", args.torch_wheel_dir)
            if found is None:
                print(f"no torch wheel in {args.torch_wheel_dir}: torch model skipped")
                return
            bench_model("torch", found[0], work / "torch-work", registry)
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
