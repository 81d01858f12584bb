#!/usr/bin/env python3
"""Time to one prediction: `cogbuild predict` (podman, umoci+runc, a directory) against podman by hand.

The peer is what a user would type without cogbuild: `podman run -d --network host oci:STORE:IMAGE`,
poll GET /health-check until READY, POST /predictions, `podman rm -f`. Same image, same machine, one run.
Each way runs --rounds times after one warm-up (podman's storage caches the image after the first run);
the median is printed with its ratio to the peer.

    .venv/bin/python bench/cli/bench_predict.py [--rounds 5]
    .venv/bin/python bench/cli/bench_predict.py --quick    # one prediction from the directory (no image)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
IMAGE = "hello:bench"
PODMAN = ["podman"]


def cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "cogbuild", "--quiet", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cogbuild {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


def require(programs: tuple[str, ...]) -> None:
    for program in programs:
        if not shutil.which(program):
            raise SystemExit(f"{program} is not installed")


def hello_workspace(root: Path) -> tuple[Path, dict[str, str]]:
    """A copy of examples/hello in `root`, and an environment whose store, cache and podman settings are there."""
    model = root / "hello"
    shutil.copytree(REPO / "examples" / "hello", model, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "COGBUILD_STORE": str(root / "store"), "COGBUILD_CACHE": str(root / "cache"),
           "CONTAINERS_CONF": str(root / "containers.conf")}
    (root / "containers.conf").write_text("[containers]\ndefault_ulimits = []\n")
    return model, env


def podman_by_hand(store: Path, env: dict[str, str]) -> str:
    port = _free_port()
    started = subprocess.run(PODMAN + ["run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}",
                                       f"oci:{store}:{IMAGE}"], capture_output=True, text=True, env=env, check=True)
    container = started.stdout.strip().splitlines()[-1]
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/health-check", timeout=2).json().get("status") == "READY":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return httpx.post(f"{base}/predictions", json={"input": {"text": "bench"}}, timeout=60).json()["output"]
    finally:
        subprocess.run(PODMAN + ["rm", "-f", "-t", "2", container], capture_output=True, env=env)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn, rounds: int) -> float:
    fn()  # warm-up: image copied into podman's storage, page cache filled
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        assert "hello bench" in out, out
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="one `cogbuild predict DIR`: checks the bench still runs")
    args = parser.parse_args()
    require(() if args.quick else ("podman", "runc", "umoci"))
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        model, env = hello_workspace(root)
        flags = ["-i", "text=bench"]
        if args.quick:  # one cold prediction, no warm-up
            start = time.perf_counter()
            out = cogbuild(["predict", str(model), *flags], root, env)
            assert "hello bench" in out, out
            print(f"cogbuild predict DIR (examples/hello, cold): {time.perf_counter() - start:.2f} s; "
                  "no peer in --quick")
            return
        cogbuild(["build", "-t", IMAGE], model, env)
        ways = {
            "podman by hand (peer)": lambda: podman_by_hand(root / "store", env),
            "cogbuild predict IMAGE --runtime podman": lambda: cogbuild(["predict", IMAGE, "--runtime", "podman", *flags], root, env),
            "cogbuild predict IMAGE --runtime runc": lambda: cogbuild(["predict", IMAGE, "--runtime", "runc", *flags], root, env),
            "cogbuild predict DIR (no image)": lambda: cogbuild(["predict", str(model), *flags], root, env),
        }
        results = {name: timed(fn, args.rounds) for name, fn in ways.items()}
    peer = results["podman by hand (peer)"]
    print(f"time to one prediction, median of {args.rounds} (examples/hello):")
    for name, seconds in results.items():
        print(f"  {name:<42} {seconds:6.2f} s   {seconds / peer:5.2f}x peer")


if __name__ == "__main__":
    main()
