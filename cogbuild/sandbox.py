"""Run a `build.run` step in a runc container over the image's filesystem, and return what it changed.

The image's layers so far are unpacked into a private root filesystem (OCI whiteouts applied). Each step
runs there as root through `runc run` (no daemon): `/bin/sh -c COMMAND` with the image's environment, in
its own mount, pid, ipc and uts namespaces but on the host's network, as Docker's RUN does, with the host's
resolv.conf and hosts and each secret bind-mounted read-only. Afterwards the mount points runc had to
create are removed again, and the difference between the tree before and after is the step's layer
(`layers.rundiff`): nothing of the sandbox's mounts reaches it. Steps run one after another on the same
root, so the next one sees what the previous one did. As root, runc runs the step with the host's user
ids; otherwise (rootless) in a user namespace where this user is root, and the layers' owners are kept
aside and put back when the diff is taken, so both give the same layer.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import zstandard

from .bytecode import HOST_ARCH
from .config import RunStep
from .container import BundleRuntime, adjust_bundle_config
from .errors import CogbuildError
from .layers.descriptor import OCI_LAYER_GZIP, OCI_LAYER_ZSTD
from .layers.image import Layer
from .layers.rundiff import WHITEOUT, Snapshot, diff_tree, scan
from .layers.tree import Tree, normalize
from .registry.layout import Layout

OUTPUT_TAIL = 25  # lines of a failed step's output shown with the error
QEMU = {"amd64": "qemu-x86_64", "arm64": "qemu-aarch64"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# What Docker grants a RUN step's root; runc's own default is much narrower (no chown, no setuid).
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


class StepFailed(CogbuildError):
    """A step exited non-zero; `details` holds the tail of its output, shown above the sentence."""

    def __init__(self, sentence: str, details: str, exit_status: int) -> None:
        super().__init__(sentence)
        self.details = details
        self.exit_status = exit_status


def check_can_run(arch: str, platform: str) -> None:
    """Steps for another architecture run only through a registered qemu-user binfmt handler."""
    if arch == HOST_ARCH:
        return
    handler = BINFMT / QEMU[arch]
    try:
        text = handler.read_text()
    except OSError:
        text = ""
    if not (text.startswith("enabled") and "flags: " in text and "F" in text.split("flags: ")[1].split()[0]):
        raise CogbuildError(f"build.run steps for {platform} cannot run on this {HOST_ARCH} host: no "
                            f"{QEMU[arch]} binfmt handler with the fix-binary flag is registered (install "
                            f"qemu-user-static, or build {platform} on an {arch} host)")


class Sandbox:
    """A root filesystem made of image layers, and runc to run steps on it; remove() deletes it all.

    Without root, runc runs in a user namespace that maps only this user, as root; the unpacked files all
    belong to this user, so the image's owners are remembered from the layers and put back in the diff.
    """

    def __init__(self, layout: Layout, cache_root: Path) -> None:
        if not shutil.which("runc"):
            raise CogbuildError("build.run steps need runc to run in; install it (apt-get install runc)")
        self.layout, self.cache_root = layout, cache_root
        self.rootless = os.geteuid() != 0
        self.owners: dict[str, tuple[int, int]] | None = {} if self.rootless else None
        work = cache_root / "sandbox"
        work.mkdir(parents=True, exist_ok=True)
        self.bundle = Path(tempfile.mkdtemp(prefix="run-", dir=work)).resolve()
        self.rootfs = self.bundle / "rootfs"
        self.rootfs.mkdir(mode=0o755)

    def add_layers(self, layers: list[Layer]) -> None:
        for layer in layers:
            with open(self.layout.blob_path(layer.descriptor.digest), "rb") as blob:
                apply_layer(self.rootfs, _decompressed(blob, layer.descriptor.media_type), self.owners)

    def run(self, number: int, step: RunStep, env: dict[str, str], secrets: dict[str, Path]) -> Tree:
        """Run one step; its changes as a layer tree (file contents stay on disk until remove())."""
        mounts = [{"destination": s.target, "type": "bind", "source": str(secrets[s.id]),
                   "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]} for s in step.secrets]
        before = self._scan()
        self.execute(f"build.run step {number}", step.command, env, mounts, [secrets[s.id] for s in step.secrets])
        return diff_tree(self.rootfs, before, self._scan())

    def execute(self, what: str, command: str, env: dict[str, str], mounts: Sequence[dict] = (),
                secret_files: Sequence[Path] = ()) -> None:
        """Run `command` as root over the root filesystem; a failure raises StepFailed naming `what`, with
        the tail of the output (any secret's value masked)."""
        config = self._write_config(command, env, list(mounts))
        created = [p for p in _mount_points(config) if not os.path.lexists(self.rootfs / p)]
        log_path = self.bundle / "output.log"
        name = f"cogbuild-run-{uuid.uuid4().hex[:12]}"
        runc = BundleRuntime("runc", self.cache_root)
        try:
            with open(log_path, "wb") as log:
                done = subprocess.run(runc.command("run", "--bundle", str(self.bundle), name),
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            subprocess.run(runc.command("delete", "--force", name), capture_output=True)
            self._remove_created(created)
        if done.returncode != 0:
            tail = _redact(_tail(log_path), list(secret_files))
            log_path.unlink()
            raise StepFailed(f"{what} (`{_short(command)}`) failed with exit code {done.returncode}", tail,
                             done.returncode)
        log_path.unlink()

    def _scan(self) -> Snapshot:
        """The root's entries with the image's owners: rootless, this user's files are root's, or whose
        the layers said they were."""
        snapshot = scan(self.rootfs)
        if self.owners is None:
            return snapshot
        mine = (os.geteuid(), os.getegid())
        return {path: replace(state, uid=owner[0], gid=owner[1]) if (state.uid, state.gid) == mine else state
                for path, state in snapshot.items()
                for owner in [self.owners.get(path, (0, 0))]}

    def _write_config(self, command: str, env: dict[str, str], mounts: list[dict]) -> dict:
        path = self.bundle / "config.json"
        path.unlink(missing_ok=True)
        rootless = ["--rootless"] if self.rootless else []
        made = subprocess.run(["runc", "spec", *rootless, "--bundle", str(self.bundle)], capture_output=True,
                              text=True)
        if made.returncode != 0:
            raise CogbuildError(f"runc could not write a container spec: {made.stderr.strip()}")
        config = json.loads(path.read_text())
        config["process"]["env"] = []
        path.write_text(json.dumps(config))
        adjust_bundle_config(path, env, self.rootless)  # host network, no terminal, host resolv.conf and hosts
        config = json.loads(path.read_text())
        process = config["process"]
        process.update(args=["/bin/sh", "-c", command], cwd="/", user={"uid": 0, "gid": 0})
        process["capabilities"] = {kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted")}
        config["root"] = {"path": "rootfs", "readonly": False}
        config["hostname"] = "cogbuild"
        config["mounts"] += mounts
        path.write_text(json.dumps(config, indent=2))
        return config

    def _remove_created(self, created: list[str]) -> None:
        """Take away the mount points (and their parents) that runc made and the step left empty."""
        for path in sorted(created, key=lambda p: -p.count("/")):
            target = self.rootfs / path
            try:
                if target.is_dir() and not target.is_symlink():
                    target.rmdir()
                elif target.stat().st_size == 0:
                    target.unlink()
            except OSError:
                pass  # not empty: the step put something there, which belongs to its layer

    def remove(self) -> None:
        shutil.rmtree(self.bundle, ignore_errors=True)


def _mount_points(config: dict) -> list[str]:
    """Each mount's destination and its parents, as image paths."""
    points = set()
    for mount in config.get("mounts", []):
        path = normalize(mount["destination"])
        while path:
            points.add(path)
            path = os.path.dirname(path)
    return sorted(points)


def _decompressed(blob: BinaryIO, media_type: str) -> BinaryIO:
    if media_type == OCI_LAYER_GZIP:
        return gzip.GzipFile(fileobj=blob)  # type: ignore[return-value]
    if media_type == OCI_LAYER_ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(blob)
    return blob


def apply_layer(root: Path, stream: BinaryIO, owners: dict[str, tuple[int, int]] | None = None) -> None:
    """Unpack one layer tar onto `root` as a container runtime would: whiteouts delete, owners are kept.

    With `owners` (not root), files stay this user's and each entry's owner is recorded there instead;
    directories keep owner write access so that later layers can add to them.
    """
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = normalize(member.name)
            folder, name = os.path.split(path)
            parent = _inside(root, folder)
            if name == WHITEOUT + WHITEOUT + ".opq":
                for child in os.listdir(parent):
                    _remove(parent / child)
                continue
            if name.startswith(WHITEOUT):
                _remove(parent / name[len(WHITEOUT):])
                _forget(owners, posixpath.join(folder, name[len(WHITEOUT):]))
                continue
            if owners is not None:
                owners[path] = (member.uid, member.gid)
            target = parent / name
            if os.path.lexists(target) and not (member.isdir() and target.is_dir() and not target.is_symlink()):
                _remove(target)
            if member.isdir():
                target.mkdir(exist_ok=True)
            elif member.issym():
                target.symlink_to(member.linkname)
            elif member.islnk():
                os.link(_inside(root, normalize(member.linkname)), target)
            elif member.isfile():
                with open(target, "wb") as out:
                    shutil.copyfileobj(tar.extractfile(member), out)  # type: ignore[arg-type]
            else:
                continue  # devices and fifos: no layer of ours has one
            if owners is None:
                os.lchown(target, member.uid, member.gid)
            if not member.issym():
                os.chmod(target, member.mode & 0o7777 | (0o700 if owners is not None and member.isdir() else 0))


def _forget(owners: dict[str, tuple[int, int]] | None, path: str) -> None:
    if owners:
        for known in [k for k in owners if k == path or k.startswith(path + "/")]:
            del owners[known]


def _inside(root: Path, path: str) -> Path:
    """root/path, refusing a path whose directories lead out of root through a symlink."""
    real = Path(os.path.realpath(root / path))
    if real != root and root not in real.parents:
        raise CogbuildError(f"a layer entry below /{path} leads outside the image through a symlink")
    return real


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _tail(log_path: Path) -> str:
    lines = log_path.read_bytes().decode(errors="replace").rstrip("\n").splitlines()
    return "\n".join(lines[-OUTPUT_TAIL:])


def _redact(text: str, secret_files: list[Path]) -> str:
    """A step may print its secret; the error shown to the user must not."""
    for path in secret_files:
        value = path.read_bytes().decode(errors="replace").strip()
        if value:
            text = text.replace(value, "***")
    return text


def _short(command: str, limit: int = 60) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"
