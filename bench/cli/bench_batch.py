#!/usr/bin/env python3
"""N predictions: `cogbuild predict IMAGE --batch` (the model started once) against N `cogbuild predict IMAGE`.

The peer is what a user without --batch writes: a shell loop of one `cogbuild predict` per input, each
starting and removing its own container. Same image (examples/hello), same runtime (podman), one run.

    .venv/bin/python bench/cli/bench_batch.py [--inputs 20]
    .venv/bin/python bench/cli/bench_batch.py --quick    # a small batch from the directory (no image)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import IMAGE, cogbuild, hello_workspace, require  # noqa: E402  (the same runner and image)


def batch(target: str, inputs: Path, root: Path, env: dict[str, str], runtime: list[str]) -> list[dict]:
    out = root / "outputs.jsonl"
    cogbuild(["predict", target, *runtime, "--batch", str(inputs), "-o", str(out)], root, env)
    return [json.loads(line) for line in out.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 inputs from the directory: checks the bench runs")
    args = parser.parse_args()
    count = 3 if args.quick else args.inputs
    require(() if args.quick else ("podman", "runc"))
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        model, env = hello_workspace(root)
        inputs = root / "inputs.jsonl"
        inputs.write_text("".join(json.dumps({"text": f"n{i}"}) + "\n" for i in range(count)))
        if args.quick:
            start = time.perf_counter()
            results = batch(str(model), inputs, root, env, [])
            assert [r["output"] for r in results] == [f"hello n{i}" for i in range(count)], results
            print(f"cogbuild predict DIR --batch ({count} inputs, cold): {time.perf_counter() - start:.2f} s; "
                  "no peer in --quick")
            return
        cogbuild(["build", "-t", IMAGE], model, env)
        podman = ["--runtime", "podman"]
        cogbuild(["predict", IMAGE, *podman, "-i", "text=warm-up"], root, env)  # the image into podman's storage
        start = time.perf_counter()
        for i in range(count):
            assert cogbuild(["predict", IMAGE, *podman, "-i", f"text=n{i}"], root, env) == f"hello n{i}"
        loop = time.perf_counter() - start
        start = time.perf_counter()
        results = batch(IMAGE, inputs, root, env, podman)
        batched = time.perf_counter() - start
        assert [r["output"] for r in results] == [f"hello n{i}" for i in range(count)], results
    print(f"{count} predictions with examples/hello in podman:")
    print(f"  one `cogbuild predict` each (peer)   {loop:7.2f} s")
    print(f"  cogbuild predict --batch             {batched:7.2f} s   {batched / loop:5.2f}x peer")


if __name__ == "__main__":
    main()
