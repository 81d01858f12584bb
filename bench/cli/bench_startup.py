#!/usr/bin/env python3
"""Start-up: how long a command takes to answer when it has next to nothing to do, against the floor.

Floors, measured in the same run: `python -c pass` (the interpreter alone) and `skopeo inspect` of the
image in a loopback docker-registry (what another tool needs to talk to the registry). Measured:
`cogbuild --help`, `cogbuild lock --check` on a current lock, and `cogbuild push` of an unchanged image
(built and pushed once before timing). Bytecode is compiled first, as an installed cogbuild has it.
Each command runs --rounds times; the median is printed with its ratios to the floors (goal: <= 0.15 s),
and the median CPU time (user + system) beside it, which moves less than wall time on a shared machine.

    .venv/bin/python bench/cli/bench_startup.py [--rounds 7] [--model DIR] [--work DIR]   # DIR: a model with cog.lock
    .venv/bin/python bench/cli/bench_startup.py --quick    # --help and lock --check only, offline, 1 round

The push needs network once to lock and build the model (examples/hello unless --model); set
COGBUILD_CACHE to reuse downloads across runs. With --work DIR the store, cache and model copy stay in DIR
afterwards (to profile a warm push by hand), and a later run reuses them. --instructions also counts the
instructions of one run of each command under valgrind's callgrind, a measure a busy shared machine does not
disturb (wall and CPU time do), to compare two versions of cogbuild in any window.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from fixtures_lock import model_with_empty_lock  # noqa: E402  (the tests' helpers)
from oci_registry_server import RegistryServer  # noqa: E402

GOAL_S = 0.15


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_time(argv: list[str], cwd: Path, env: dict[str, str], rounds: int) -> tuple[float, float]:
    """Median wall and median CPU seconds over `rounds` runs, after one that warms caches."""
    run(argv, cwd, env)  # warm the page cache and bytecode
    runs = [run(argv, cwd, env) for _ in range(rounds)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def instructions(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """User-space instructions one run executes, as valgrind's callgrind counts them."""
    if not shutil.which("valgrind"):
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv], cwd=cwd,
                          env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    counted = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not counted:
        raise SystemExit(f"{' '.join(argv)} under valgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(counted.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model", type=Path, help="a model directory (default: a copy of examples/hello)")
    parser.add_argument("--quick", action="store_true", help="--help and lock --check only, one round")
    parser.add_argument("--work", type=Path, help="keep the store, cache and model here (default: removed after)")
    parser.add_argument("--instructions", action="store_true",
                        help="also count each command's instructions under valgrind (slow; steady under load)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    for folder in ("cogbuild", "layers", "registry"):
        compileall.compile_dir(REPO / folder, quiet=1)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="cogbuild-bench-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COGBUILD_STORE": str(work / "store"), "DOCKER_CONFIG": str(work / "docker")}
    env.setdefault("COGBUILD_CACHE", str(work / "cache"))
    (work / "docker").mkdir(exist_ok=True)
    (work / "docker" / "config.json").write_text("{}")
    cogbuild = [sys.executable, "-m", "cogbuild", "--quiet"]
    registry = None
    try:
        check_dir = model_with_empty_lock(Path(tempfile.mkdtemp(dir=work)))
        floors = [("python -c pass", [sys.executable, "-c", "pass"], work)]
        measured = [("cogbuild --help", cogbuild + ["--help"], work),
                    ("cogbuild lock --check", cogbuild + ["lock", "--check"], check_dir)]
        if not args.quick:
            registry = RegistryServer(work / "registry").start()
            model = args.model or REPO / "examples" / "hello"
            shutil.copytree(model, work / "model", ignore=shutil.ignore_patterns("__pycache__"),
                            dirs_exist_ok=True)  # with --work, the cog.lock of an earlier run is kept
            ref = f"{registry.host}/bench/model:v1"
            print("locking, building and pushing the model once ...", flush=True)
            run(cogbuild + ["push", ref], work / "model", env)  # lock, build and first push
            floors.append(("skopeo inspect", ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], work))
            measured.append(("cogbuild push (unchanged)", cogbuild + ["push", ref], work / "model"))
        times = {label: median_time(argv, cwd, env, rounds) for label, argv, cwd in floors + measured}
        python_floor = times["python -c pass"][0]
        skopeo_floor = times["skopeo inspect"][0] if "skopeo inspect" in times else None
        print(f"\nmedian of {rounds} round(s), bytecode present; goal <= {GOAL_S} s (wall)")
        print(f"{'command':<28}{'seconds':>9}{'/python':>9}{'/skopeo':>9}{'cpu s':>8}  goal")
        for label, _, _ in floors:
            print(f"{label:<28}{times[label][0]:>9.3f}{'':>18}{times[label][1]:>8.3f}")
        for label, _, _ in measured:
            seconds, cpu = times[label]
            vs_skopeo = f"{seconds / skopeo_floor:>8.1f}x" if skopeo_floor else f"{'-':>9}"
            print(f"{label:<28}{seconds:>9.3f}{seconds / python_floor:>8.1f}x{vs_skopeo}{cpu:>8.3f}  "
                  f"{'met' if seconds <= GOAL_S else 'NOT met'}")
        if args.instructions:
            print("\ninstructions (valgrind callgrind, one run each, PYTHONHASHSEED=0): the same on a busy machine")
            counts = {label: instructions(argv, cwd, env) for label, argv, cwd in floors[:1] + measured}
            for label, count in counts.items():
                print(f"{label:<28}{count / 1e6:>9.1f} M{count / counts['python -c pass']:>8.1f}x")
    finally:
        if registry:
            registry.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
