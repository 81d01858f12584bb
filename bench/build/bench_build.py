"""Build benchmarks, ours beside named peers in one run (ratios only; absolute times vary by machine).

1. examples/hello and a torch model: build from a warm download cache (without bytecode, with the bytecode
   compiled, with the bytecode cached), each build's peak RSS, and a rebuild after editing predict.py.
2. Layer composition of the same trees: wheel install, then cogbuild's tar writer (no compression, gzip,
   zstd) vs GNU tar + gzip and GNU tar + pigz.
3. Compressed image sizes and the image digest (with --work DIR, kept between runs, compare before/after).

    .venv/bin/python bench/build/bench_build.py [--torch-wheel-dir /opt/wheels]
    .venv/bin/python bench/build/bench_build.py --quick    # composition of a small generated wheel only
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "support"))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of the command (the largest of it and the children it waited for)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}):\n{stderr.read().decode()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux reports KiB


def image_digest_and_size(store: Path, name: str) -> tuple[str, int]:
    from cogbuild.registry.archive import image_blobs
    from cogbuild.registry.layout import Layout

    layout = Layout(store)
    image = layout.resolve(name)
    return image.digest, sum(b.size for b in image_blobs(layout, image))


def bench_model(label: str, model: Path, work: Path) -> dict[str, float]:
    env = {**os.environ, "COGBUILD_CACHE": str(work / "cache"), "COGBUILD_STORE": str(work / "store")}
    cogbuild = [sys.executable, "-m", "cogbuild", "-q", "build", "-t", f"{label}:bench"]
    run(cogbuild, model, env)  # lock + download: not measured

    def from_warm_downloads(*options: str, bytecode_cache: bool = True) -> tuple[float, float]:
        shutil.rmtree(work / "store")
        shutil.rmtree(work / "cache" / "layers")
        if not bytecode_cache:
            shutil.rmtree(work / "cache" / "bytecode", ignore_errors=True)
        return run(cogbuild + list(options), model, env)

    without_bytecode, _ = from_warm_downloads("--no-bytecode")
    cold, cold_rss = from_warm_downloads(bytecode_cache=False)
    warm, peak_rss = from_warm_downloads()
    predict = model / "predict.py"
    predict.write_text(predict.read_text() + "\n# edited\n")
    rebuild, _ = run(cogbuild, model, env)
    digest, size = image_digest_and_size(work / "store", f"{label}:bench")
    print(f"{label:8} build (warm download and bytecode caches) {warm:6.2f} s, peak RSS {peak_rss:5.0f} MB   "
          f"rebuild after editing predict.py {rebuild:5.2f} s   image {size / 1e6:6.1f} MB compressed, {digest}")
    print(f"{'':8} bytecode: {cold - without_bytecode:6.2f} s compiled ({cold:.2f} s build, peak RSS {cold_rss:.0f} MB), "
          f"{warm - without_bytecode:6.2f} s from its cache; --no-bytecode build {without_bytecode:.2f} s; "
          "wheel install and compression: see the composition below")
    return {"warm": warm, "rebuild": rebuild, "size": size, "peak_rss": max(peak_rss, cold_rss)}


def bench_composition(wheel: Path, work: Path) -> None:
    """One big tree (an installed wheel) composed by us and by GNU tar piped into gzip / pigz."""
    from cogbuild.layers.tarball import Compression, write_layer
    from cogbuild.layers.tree import Tree
    from cogbuild.layers.wheel import PythonPaths, install_wheel

    tree = Tree()
    start = time.perf_counter()
    install_wheel(tree, wheel, wheel.name, PythonPaths("3.11"))  # from the file, as a build does
    installed = time.perf_counter() - start
    root = work / "tree"
    shutil.rmtree(root, ignore_errors=True)
    for entry in tree.entries():
        target = root / entry.path
        if entry.type == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif entry.type == "file":
            target.write_bytes(entry.read())
    raw = sum(e.size for e in tree.entries() if e.type == "file")
    results = {}
    for name in ("none", "gzip", "zstd"):
        start = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            write_layer(tree, sink, Compression.parse(name), 0)
        results[f"cogbuild {name}-{Compression.parse(name).level}"] = time.perf_counter() - start
    tar = ["tar", "-C", str(root), "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
           "-cf", "-", "."]
    for name, compressor in (("GNU tar + gzip -6", "gzip -6 -n"), ("GNU tar + pigz -6", "pigz -6 -n")):
        if shutil.which(compressor.split()[0]) is None:
            continue
        start = time.perf_counter()
        subprocess.run(" ".join(tar) + f" | {compressor} > /dev/null", shell=True, check=True)
        results[name] = time.perf_counter() - start
    ours = results["cogbuild gzip-6"]
    print(f"\ncomposition of {wheel.name} ({raw / 1e6:.0f} MB uncompressed); wheel install (installer, into a tree) "
          f"{installed:.2f} s; ratio = cogbuild gzip-6 throughput / this one's (none-0: tar and hashing alone):")
    for name, seconds in results.items():
        print(f"  {name:22} {seconds:6.2f} s  {raw / seconds / 1e6:6.0f} MB/s   ratio {seconds / ours:5.2f}x")


def small_wheel(work: Path) -> Path:
    """A generated wheel of a few MB, half source-like text, half incompressible (like .so files)."""
    from fixtures_build import make_wheel  # the tests' wheel builder

    files = {f"quick/mod{i}.py": (f"def f{i}(x):\n    return x * {i}\n" * 400).encode() for i in range(100)}
    files.update({f"quick/lib{i}.so": os.urandom(512 << 10) for i in range(8)})
    name, data = make_wheel("quick", files=files)
    (work / name).write_bytes(data)
    return work / name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-wheel-dir", default="/opt/wheels")
    parser.add_argument("--quick", action="store_true",
                        help="only the composition benchmark, on a small generated wheel (offline, seconds)")
    parser.add_argument("--work", type=Path, help="keep downloads here between runs (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cogbuild-bench-") as tmp:
        work = args.work or Path(tmp)
        if args.quick:
            bench_composition(small_wheel(work), work)
            return
        hello = work / "hello"
        shutil.copytree(REPO / "examples" / "hello", hello, ignore=shutil.ignore_patterns("cog.lock"),
                        dirs_exist_ok=True)  # with --work, the cog.lock of an earlier run is kept
        bench_model("hello", hello, work / "hello-work")
        found = torch_model(work / "torch-model", args.torch_wheel_dir)
        if found is None:
            print(f"no torch wheel in {args.torch_wheel_dir}: torch model and composition benchmarks skipped")
            return
        model, wheel = found
        bench_model("torch", model, work / "torch-work")
        bench_composition(wheel, work)


def torch_model(root: Path, wheel_dir: str) -> tuple[Path, Path] | None:
    """A model that imports torch, from the newest CPU wheel for Python 3.11 in `wheel_dir`, and that wheel."""
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "torch-*-cp311-*.whl")))
    if not wheels:
        return None
    root.mkdir(exist_ok=True)  # with --work, the cog.lock of an earlier run is kept
    (root / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_requirements: '
                                   'requirements.txt\npredict: "predict.py:Predictor"\n')
    version = Path(wheels[-1]).name.split("-")[1]
    (root / "requirements.txt").write_text(f"--find-links {wheel_dir}\ntorch=={version}\n")
    (root / "predict.py").write_text("from cog import BasePredictor\nimport torch\n\n\n"
                                     "class Predictor(BasePredictor):\n"
                                     "    def predict(self, n: int = 3) -> float:\n"
                                     "        return float(torch.arange(n).sum())\n")
    return root, Path(wheels[-1])


if __name__ == "__main__":
    main()
