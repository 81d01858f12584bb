"""Build benchmarks, ours beside named peers in one run (ratios only; absolute times vary by machine).

1. examples/hello and a torch model: build from a warm download cache (without bytecode, with the bytecode
   compiled, with the bytecode cached), each build's peak RSS, and a rebuild after editing predict.py.
   With --gpu, also the torch model's GPU variant (the NVIDIA CUDA wheels from PyPI, ~3 GB, downloaded
   once into --work): one build from warm download and bytecode caches, its wall time and peak RSS.
2. Layer composition of the same trees: wheel install, then cogbuild's tar writer (no compression, gzip,
   zstd) vs GNU tar + gzip and GNU tar + pigz.
3. Compressed image sizes and the image digest (with --work DIR, kept between runs, compare before/after).

    .venv/bin/python bench/build/bench_build.py [--torch-wheel-dir /opt/wheels] [--gpu --work DIR]
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
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "support"))


class Measured(NamedTuple):
    wall: float  # seconds
    peak_rss: float  # MB: the largest of the command and the children it waited for
    cpu: float  # user + system seconds of the command and its children: much less disturbed by a loaded machine


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> Measured:
    start = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}):\n{stderr.read().decode()[-2000:]}")
    # Linux reports KiB
    return Measured(time.perf_counter() - start, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def image_digest_and_size(store: Path, name: str) -> tuple[str, int]:
    from cogbuild.registry.archive import image_blobs
    from cogbuild.registry.layout import Layout

    layout = Layout(store)
    image = layout.resolve(name)
    return image.digest, sum(b.size for b in image_blobs(layout, image))


def model_env(work: Path) -> dict[str, str]:
    return {**os.environ, "COGBUILD_CACHE": str(work / "cache"), "COGBUILD_STORE": str(work / "store")}


def from_warm_downloads(cogbuild: list[str], model: Path, work: Path, env: dict[str, str],
                        bytecode_cache: bool = True) -> Measured:
    """A build with nothing in the store or the layer cache: every layer composed from cached downloads."""
    shutil.rmtree(work / "store")
    shutil.rmtree(work / "cache" / "layers")
    if not bytecode_cache:
        shutil.rmtree(work / "cache" / "bytecode", ignore_errors=True)
    return run(cogbuild, model, env)


def bench_model(label: str, model: Path, work: Path) -> dict[str, float]:
    env = model_env(work)
    cogbuild = [sys.executable, "-m", "cogbuild", "-q", "build", "-t", f"{label}:bench"]
    run(cogbuild, model, env)  # lock + download: not measured

    without_bytecode, _, _ = from_warm_downloads(cogbuild + ["--no-bytecode"], model, work, env)
    cold, cold_rss, _ = from_warm_downloads(cogbuild, model, work, env, bytecode_cache=False)
    warm, peak_rss, warm_cpu = from_warm_downloads(cogbuild, model, work, env)
    predict = model / "predict.py"
    predict.write_text(predict.read_text() + "\n# edited\n")
    rebuild = run(cogbuild, model, env).wall
    digest, size = image_digest_and_size(work / "store", f"{label}:bench")
    print(f"{label:8} build (warm download and bytecode caches) {warm:6.2f} s ({warm_cpu:.1f} s CPU), "
          f"peak RSS {peak_rss:5.0f} MB   "
          f"rebuild after editing predict.py {rebuild:5.2f} s   image {size / 1e6:6.1f} MB compressed, {digest}")
    print(f"{'':8} bytecode: {cold - without_bytecode:6.2f} s compiled ({cold:.2f} s build, peak RSS {cold_rss:.0f} MB), "
          f"{warm - without_bytecode:6.2f} s from its cache; --no-bytecode build {without_bytecode:.2f} s; "
          "wheel install and compression: see the composition below")
    return {"warm": warm, "rebuild": rebuild, "size": size, "peak_rss": max(peak_rss, cold_rss)}


def bench_gpu_model(model: Path, work: Path, wheel_dir: Path) -> None:
    """The torch model's GPU variant (torch from PyPI with its NVIDIA wheels), once from warm caches."""
    env = {**model_env(work), "COGBUILD_CPU_FIND_LINKS": str(wheel_dir)}  # the lock's cpu variant: the local wheel
    cogbuild = [sys.executable, "-m", "cogbuild", "-q", "build", "--variant", "gpu", "-t", "torch-gpu:bench"]
    download, download_rss, _ = run(cogbuild, model, env)  # lock + download (~3 GB the first time)
    warm, peak_rss, warm_cpu = from_warm_downloads(cogbuild, model, work, env)
    digest, size = image_digest_and_size(work / "store", "torch-gpu:bench")
    print(f"{'torch-gpu':8} build (warm download and bytecode caches) {warm:6.2f} s ({warm_cpu:.1f} s CPU), "
          f"peak RSS {peak_rss:5.0f} MB   "
          f"image {size / 1e6:6.1f} MB compressed, {digest}")
    print(f"{'':8} the first build of this run (lock, downloads and bytecode; nothing when --work kept its image) "
          f"{download:.2f} s, peak RSS {download_rss:.0f} MB")


class Timed(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds of this process's threads and of the children it waited for


def timed(action) -> Timed:
    """Run `action()`; wall and CPU seconds (this process and the children it waited for)."""
    before, start = os.times(), time.perf_counter()
    action()
    after = os.times()
    cpu = sum(b - a for a, b in zip(before[:4], after[:4], strict=True))  # user, system, children's user and system
    return Timed(time.perf_counter() - start, cpu)


def read_members(tree) -> None:
    """Every file's content read once, as the tar writer reads it (a wheel member: inflated, CRC-checked)."""
    for entry in tree.entries():
        if entry.opener is not None:
            with entry.opener() as stream:
                while stream.read(1 << 20):
                    pass
        elif entry.type == "file":
            entry.read()


def bench_composition(wheel: Path, work: Path) -> None:
    """One big tree (an installed wheel) composed by us and by GNU tar piped into gzip / pigz, and where
    composing it takes its time: wheel install, reading the members, tar and hashing, compression."""
    from cogbuild.layers.tarball import Compression, write_layer
    from cogbuild.layers.tree import Tree
    from cogbuild.layers.wheel import PythonPaths, install_wheel

    tree = Tree()
    install = timed(lambda: install_wheel(tree, wheel, wheel.name, PythonPaths("3.11")))  # from the file, as a build does
    root = work / "tree"
    shutil.rmtree(root, ignore_errors=True)
    for entry in tree.entries():
        target = root / entry.path
        if entry.type == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif entry.type == "file":
            target.write_bytes(entry.read())
    raw = sum(e.size for e in tree.entries() if e.type == "file")
    default = Compression.parse("gzip")
    ours = f"cogbuild gzip-{default.level}"
    results: dict[str, tuple[Timed, int]] = {}
    for spec in ("none", "gzip", "gzip-zlib", "zstd"):
        compression = Compression.parse(spec)
        with open(os.devnull, "wb") as sink:
            digests = []
            run_time = timed(lambda d=digests, c=compression: d.append(write_layer(tree, sink, c, 0)))
        results[f"cogbuild {spec}-{compression.level}"] = (run_time, digests[0].size)
    tar = ["tar", "-C", str(root), "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
           "-cf", "-", "."]
    for name, compressor in (("GNU tar + gzip -6", "gzip -6 -n"), ("GNU tar + pigz -6", "pigz -6 -n")):
        if shutil.which(compressor.split()[0]) is None:
            continue
        out = work / "gnu.tar.gz"
        run_time = timed(lambda c=compressor, o=out: subprocess.run(" ".join(tar) + f" | {c} > {o}", shell=True, check=True))
        results[name] = (run_time, out.stat().st_size)
        out.unlink()
    reading = timed(lambda: read_members(tree))
    print(f"\ncomposition of {wheel.name} ({raw / 1e6:.0f} MB uncompressed); "
          f"ratio = {ours} throughput / this one's (none-0: tar and hashing alone):")
    base_wall, base_size = results[ours][0].wall, results["cogbuild gzip-zlib-6"][1]
    for name, (run_time, size) in results.items():
        print(f"  {name:22} {run_time.wall:6.2f} s ({run_time.cpu:5.1f} s CPU) {raw / run_time.wall / 1e6:6.0f} MB/s"
              f"   ratio {run_time.wall / base_wall:5.2f}x   {size / 1e6:7.1f} MB ({size / base_size - 1:+.1%} vs zlib -6)")
    stages = {  # CPU seconds: a loaded shared machine disturbs them far less than wall time
        "wheel install (installer, RECORD)": install.cpu,
        "reading members (inflate, CRC)": reading.cpu,
        "tar headers and sha256": results["cogbuild none-0"][0].cpu - reading.cpu,
        f"gzip (libdeflate -{default.level}, all threads)": results[ours][0].cpu - results["cogbuild none-0"][0].cpu,
    }
    total = install.cpu + results[ours][0].cpu
    print(f"where composing this wheel's layer spends its {total:.1f} s of CPU (install, then {ours}):")
    for stage, cpu in stages.items():
        print(f"  {stage:40} {cpu:6.2f} s  {cpu / total:6.1%}")


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
    parser.add_argument("--gpu", action="store_true",
                        help="also the torch model's GPU variant (downloads ~3 GB once; use --work to keep them)")
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
        wheel = torch_wheel(args.torch_wheel_dir)
        if wheel is None:
            print(f"no torch wheel in {args.torch_wheel_dir}: torch model and composition benchmarks skipped")
            return
        bench_model("torch", torch_model(work / "torch-model", wheel), work / "torch-work")
        if args.gpu:
            bench_gpu_model(torch_model(work / "torch-gpu", wheel, gpu=True), work / "torch-gpu-work", wheel.parent)
        bench_composition(wheel, work)


def torch_wheel(wheel_dir: str) -> Path | None:
    """The newest torch CPU wheel for Python 3.11 in `wheel_dir`."""
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "torch-*-cp311-*.whl")))
    return Path(wheels[-1]) if wheels else None


def torch_model(root: Path, wheel: Path, gpu: bool = False) -> Path:
    """A model that imports torch: the CPU `wheel` (from its directory), or with `gpu` the same torch version
    from PyPI (a CUDA build) in a model with `gpu: true`."""
    root.mkdir(exist_ok=True)  # with --work, the cog.lock of an earlier run is kept
    (root / "cog.yaml").write_text('build:\n' + ('  gpu: true\n' if gpu else '') + '  python_version: "3.11"\n'
                                   '  python_requirements: requirements.txt\npredict: "predict.py:Predictor"\n')
    version = wheel.name.split("-")[1]
    requirement = f"torch=={version.split('+')[0]}" if gpu else f"--find-links {wheel.parent}\ntorch=={version}"
    (root / "requirements.txt").write_text(requirement + "\n")
    (root / "predict.py").write_text("from cog import BasePredictor\nimport torch\n\n\n"
                                     "class Predictor(BasePredictor):\n"
                                     "    def predict(self, n: int = 3) -> float:\n"
                                     "        return float(torch.arange(n).sum())\n")
    return root


if __name__ == "__main__":
    main()
