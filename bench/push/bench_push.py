#!/usr/bin/env python3
"""Push benchmark: cogbuild's push_image against `skopeo copy oci:… docker://…`, same image, one run.

Each tool gets its own fresh docker-registry on loopback (so neither profits from blobs the other
pushed). Three rounds: first push, re-push of the unchanged image, push after a code edit (only the
code layer changes). Prints seconds, bytes sent (ours) and ratios.

    .venv/bin/python bench/push/bench_push.py [--big-mb 256] [--mid-mb 48]
    .venv/bin/python bench/push/bench_push.py --quick     # 1 MB layers: checks the bench still runs
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))

from oci_registry_server import RegistryServer  # noqa: E402  (the tests' real-registry helper)

from cogbuild.layers.descriptor import (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor,  # noqa: E402
                                        canonical_json)
from cogbuild.registry.layout import Layout  # noqa: E402
from cogbuild.registry.remote import push_image  # noqa: E402
from cogbuild.registry.transfer import TransferStats  # noqa: E402


def layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def write_image(layout: Layout, layers: list[tuple[bytes, str]], tag: str) -> Descriptor:
    descs = []
    for data, _ in layers:
        layout.write_blob(data)
        descs.append(Descriptor.of(OCI_LAYER_GZIP, data).to_json())
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}})
    layout.write_blob(config)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": Descriptor.of(OCI_CONFIG, config).to_json(), "layers": descs})
    layout.write_blob(manifest)
    desc = Descriptor.of(OCI_MANIFEST, manifest)
    layout.tag(tag, desc)
    return desc


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def skopeo_push(layout: Layout, tag: str, dest: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout.root}:{tag}",
                    f"docker://{dest}"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mb", type=int, default=256)
    parser.add_argument("--mid-mb", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="1 MB layers, to check the bench still runs")
    args = parser.parse_args()
    if args.quick:
        args.big_mb = args.mid_mb = 1
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        sys.exit("needs skopeo and docker-registry on PATH")
    work = Path(tempfile.mkdtemp(prefix="cogbuild-bench-push-"))
    os.environ["COGBUILD_CACHE"] = str(work / "cache")
    os.environ["DOCKER_CONFIG"] = str(work / "docker")
    (work / "docker").mkdir()
    (work / "docker" / "config.json").write_text("{}")
    ours_registry = RegistryServer(work / "reg-ours").start()
    peer_registry = RegistryServer(work / "reg-skopeo").start()
    try:
        print(f"building image: {args.big_mb} MB + {args.mid_mb} MB random layers + code layer ...", flush=True)
        layout = Layout(work / "layout").init()
        big = layer({"weights/big.bin": os.urandom(args.big_mb << 20)})
        mid = layer({"lib/mid.bin": os.urandom(args.mid_mb << 20)})
        v1 = write_image(layout, [mid, big, layer({"src/predict.py": b"print('v1')\n"})], "v1")
        v2 = write_image(layout, [mid, big, layer({"src/predict.py": b"print('v2')\n"})], "v2")
        total = sum(len(layout.read_blob(d["digest"], verify=False)) for d in
                    __import__("json").loads(layout.read_blob(v1.digest))["layers"])

        rows = []
        for label, tag, desc in [("first push", "v1", v1), ("re-push unchanged", "v1", v1),
                                 ("push after code edit", "v2", v2)]:
            stats = TransferStats()
            ours = timed(lambda desc=desc, tag=tag, stats=stats: push_image(
                layout, desc, f"{ours_registry.host}/bench/model:{tag}", stats=stats))
            peer = timed(lambda tag=tag: skopeo_push(layout, tag, f"{peer_registry.host}/bench/model:{tag}"))
            rows.append((label, ours, peer, stats.bytes_sent))

        print(f"\nimage: {total / 1e6:.1f} MB compressed in 3 layers; registry: docker-registry on loopback")
        print(f"{'round':<24}{'cogbuild s':>12}{'skopeo s':>12}{'skopeo/ours':>13}{'ours sent':>14}")
        for label, ours, peer, sent in rows:
            print(f"{label:<24}{ours:>12.3f}{peer:>12.3f}{peer / ours:>12.2f}x{sent:>12,d} B")
        first_ours, first_peer = rows[0][1], rows[0][2]
        print(f"\nfirst-push throughput: cogbuild {total / first_ours / 1e6:.0f} MB/s, "
              f"skopeo {total / first_peer / 1e6:.0f} MB/s, ratio {first_peer / first_ours:.2f} (goal >= 0.8)")
        print(f"re-push: {rows[1][3]} blob bytes sent in {rows[1][1]:.3f} s (goal 0 bytes, < 0.5 s)")
    finally:
        ours_registry.stop()
        peer_registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
