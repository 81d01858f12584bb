"""Run an image in a container runtime and reach the Cog HTTP API inside it on a loopback port.

Three ways to run, one interface (`Container`):
  * podman or docker, with host networking so the server's `PORT` is on this host's loopback;
  * daemonless: the image unpacked by `umoci` into an OCI runtime bundle and started with `runc` (or
    `crun`), its config.json adjusted for the host network and no terminal. As root the unpack is done
    once per image and each run gets an overlay on it; otherwise (rootless) each run unpacks afresh.

Which image, and in what form a runtime gets it, is `images.py`'s part.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol

import httpx

from .errors import CogbuildError, UsageError
from .interrupts import shielded
from .images import RUN_REF, Image, podman_image_layout, prune_stale, single_image_layout, write_oci_archive
from .layers.descriptor import OCI_LAYER_ZSTD, children
from .settings import DEFAULT_READY_TIMEOUT, process_environment

if TYPE_CHECKING:
    from .containerd import ContainerdRuntime

RUNTIMES = ("podman", "docker", "runc", "crun", "containerd")
STOP_GRACE = 2  # seconds a stopping container has between SIGTERM and SIGKILL
_STDERR = 2  # a container's output goes to our stderr; stdout carries results only


class ModelStartError(CogbuildError):
    """The model server did not become ready; `details` holds its output, shown above the sentence."""

    def __init__(self, sentence: str, details: str) -> None:
        super().__init__(sentence)
        self.details = details


def _reason(output: str) -> str:
    """The last non-empty line of a server's output: usually the exception that stopped it."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "it printed nothing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_gpu() -> bool:
    """An NVIDIA GPU this host can pass to containers (its device node or its tool is present)."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


# -- runtimes ------------------------------------------------------------------------------------
class Container(Protocol):
    """A started container whose Cog server listens on `base_url`."""

    base_url: str

    def logs(self) -> str: ...

    def alive(self) -> bool: ...

    def follow_logs(self) -> Callable[[], None]:
        """Copy the container's output to stderr as it comes; returns the function that stops copying."""
        ...

    def remove(self) -> None: ...


class Runtime(Protocol):
    name: str

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> Container: ...


def choose_runtime(name: str | None = None, *, cache_root: Path) -> Runtime:
    """The runtime named, or the first available: podman, docker or containerd (with a daemon that answers),
    runc, crun. Daemonless runtimes keep their bundles and logs under `cache_root`."""
    if name:
        if name not in RUNTIMES:
            raise UsageError(f"unknown container runtime {name!r} (choose from {', '.join(RUNTIMES)})")
        if name == "containerd":
            if not shutil.which("ctr"):
                raise UsageError("running with containerd needs its client ctr; install it (apt-get install containerd)")
            return _containerd_runtime(cache_root)
        if not shutil.which(name):
            raise UsageError(f"the container runtime {name!r} is not installed (not on PATH)")
        if name in ("runc", "crun") and not shutil.which("umoci"):
            raise UsageError(f"running with {name} needs umoci to unpack the image; install it (apt-get install umoci)")
        return EngineRuntime(name) if name in ("podman", "docker") else BundleRuntime(name, cache_root)
    if shutil.which("podman"):
        return EngineRuntime("podman")
    if shutil.which("docker") and _docker_daemon_answers():
        return EngineRuntime("docker")
    if shutil.which("ctr") and _containerd_runtime(cache_root).answers():
        return _containerd_runtime(cache_root)
    for program in ("runc", "crun"):
        if shutil.which(program) and shutil.which("umoci"):
            return BundleRuntime(program, cache_root)
    raise CogbuildError("no container runtime found: install podman, docker, or umoci with runc "
                        "(apt-get install podman runc umoci)")


def _containerd_runtime(cache_root: Path) -> ContainerdRuntime:
    from .containerd import ContainerdRuntime  # it builds on this module

    return ContainerdRuntime(cache_root)


def _docker_daemon_answers() -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def new_container_name() -> str:
    return f"cogbuild-{uuid.uuid4().hex[:12]}"


def run_detached(command: list[str], **options) -> subprocess.CompletedProcess:
    """Run a step that starts or removes a container in a session of its own: a Ctrl-C at the terminal
    goes to our process group only, and we finish (or undo) the step rather than have it killed halfway."""
    return subprocess.run(command, start_new_session=True, **options)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def crun_refuses_this_host() -> bool:
    """crun (1.8) refuses hosts whose cgroups are in hybrid mode with a controller on the v2 hierarchy
    ("cgroups in hybrid mode not supported"); runc runs there."""
    try:
        return bool(Path("/sys/fs/cgroup/unified/cgroup.controllers").read_text().split())
    except OSError:
        return False


def _ulimit_free_containers_conf() -> str:
    """podman refuses to start on hosts whose hard ulimits it cannot copy; an empty default list avoids it."""
    path = Path(tempfile.gettempdir()) / "cogbuild-containers.conf"
    if not path.exists():
        path.write_text("[containers]\ndefault_ulimits = []\n")
    return str(path)


@dataclass
class EngineRuntime:
    """podman or docker: the image is handed over as a layout (podman) or an OCI archive (docker load)."""

    name: str

    def command(self, *args: str) -> list[str]:
        # podman picks its OCI runtime and cgroup manager from the host: crun whenever it is installed,
        # even where crun cannot run.
        if self.name == "podman" and crun_refuses_this_host() and shutil.which("runc"):
            return [self.name, "--runtime", "runc", *args]
        return [self.name, *args]

    def env(self) -> dict[str, str]:
        env = process_environment()
        if self.name == "podman" and not env.get("CONTAINERS_CONF"):  # the user's own configuration wins
            env["CONTAINERS_CONF"] = _ulimit_free_containers_conf()
        return env

    def gpu_flags(self) -> list[str]:
        return ["--device", "nvidia.com/gpu=all"] if self.name == "podman" else ["--gpus", "all"]

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> "EngineContainer":
        container = EngineContainer(self, new_container_name(), f"http://127.0.0.1:{port}")
        try:
            self._run(image, container, port, env, gpu)
        except BaseException:  # an interrupted `run` may still have made the container: it has our name
            container.remove()
            raise
        return container

    def _run(self, image: Image, container: "EngineContainer", port: int, env: dict[str, str], gpu: bool) -> None:
        args = ["run", "-d", "--rm", "--name", container.id, "--network", "host", "-e", f"PORT={port}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if gpu:
            args += self.gpu_flags()
        if self.name == "podman":
            target = f"oci:{podman_image_layout(image)}:{RUN_REF}"
        else:
            target = self._docker_load(image)
        started = subprocess.run(self.command(*args, target), capture_output=True, text=True, env=self.env())
        if started.returncode != 0:
            raise CogbuildError(f"{self.name} could not start {image.name}: {last_line(started.stderr)}")

    def _docker_load(self, image: Image) -> str:
        """docker runs only what its daemon stores: load the manifest as an OCI archive, named by digest."""
        name = f"cogbuild.local/run:{image.manifest.digest.hex[:32]}"
        with tempfile.TemporaryFile() as archive:
            write_oci_archive(image, archive, name)
            archive.seek(0)
            loaded = subprocess.run(self.command("load"), stdin=archive, capture_output=True, text=True)
        if loaded.returncode != 0:
            raise CogbuildError(f"docker could not load {image.name}: {last_line(loaded.stderr)}")
        return name


@dataclass
class EngineContainer:
    runtime: EngineRuntime
    id: str  # its name
    base_url: str

    def logs(self) -> str:
        out = subprocess.run(self.runtime.command("logs", self.id), capture_output=True, text=True,
                             env=self.runtime.env())
        return (out.stdout + out.stderr).strip()

    def alive(self) -> bool:
        out = subprocess.run(self.runtime.command("inspect", "--format", "{{.State.Running}}", self.id),
                             capture_output=True, text=True, env=self.runtime.env())
        return out.returncode == 0 and out.stdout.strip() == "true"

    def follow_logs(self) -> Callable[[], None]:
        follower = subprocess.Popen(self.runtime.command("logs", "-f", self.id), env=self.runtime.env(),
                                    stdout=_STDERR, stderr=_STDERR)
        def stop() -> None:
            follower.terminate()
            follower.wait()

        return stop

    def remove(self) -> None:
        """Stop it (SIGTERM, SIGKILL after STOP_GRACE seconds) and delete it; never cut short by a signal."""
        with shielded():
            run_detached(self.runtime.command("rm", "-f", "-t", str(STOP_GRACE), self.id), capture_output=True,
                          env=self.runtime.env())


@dataclass
class BundleRuntime:
    """Daemonless: `umoci unpack` the image into an OCI runtime bundle, then `runc run -d` (or crun)."""

    name: str
    cache_root: Path  # bundles and unpacked images live under it

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> "BundleContainer":
        bundles = self.cache_root / "bundles"
        bundles.mkdir(parents=True, exist_ok=True)
        container_id = new_container_name()
        container = BundleContainer(self, container_id, f"http://127.0.0.1:{port}", bundles / container_id)
        try:
            prepare_bundle(image, container.bundle, self.cache_root)
            adjust_bundle_config(container.bundle / "config.json", {"PORT": str(port), **env},
                                 rootless=os.geteuid() != 0)
            with open(container.log_path, "wb") as log, shielded():  # no half-made container: finish, then remove
                run = self.command("run", "--detach", "--bundle", str(container.bundle), container_id)
                started = run_detached(run, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if started.returncode != 0:
                raise CogbuildError(f"{self.name} could not start {image.name}: {last_line(container.logs())}")
            return container
        except BaseException:
            container.remove()
            raise

    def command(self, *args: str) -> list[str]:
        rootless = ["--rootless", "true"] if os.geteuid() != 0 and self.name == "runc" else []
        return [self.name, *rootless, *args]


def prepare_bundle(image: Image, bundle: Path, cache_root: Path) -> None:
    """An OCI runtime bundle for `image` at `bundle`.

    As root: the image is unpacked once per manifest into the cache (umoci hashes every file, seconds
    for a small image) and each container gets an overlay on top of it, so runs start at once and
    never change the cached tree. Otherwise, or when overlay mounts are refused: a fresh unpack.
    """
    if os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount"):
        unpacked = _cached_unpack(image, cache_root)
        bundle.mkdir()
        for part in ("rootfs", "upper", "work"):
            (bundle / part).mkdir()
        options = f"lowerdir={unpacked / 'rootfs'},upperdir={bundle / 'upper'},workdir={bundle / 'work'}"
        mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(bundle / "rootfs")],
                                 capture_output=True, text=True)
        if mounted.returncode == 0:
            shutil.copyfile(unpacked / "config.json", bundle / "config.json")
            return
        shutil.rmtree(bundle)
    _unpack(image, bundle, rootless=os.geteuid() != 0)


def _cached_unpack(image: Image, cache_root: Path) -> Path:
    """The image unpacked once, keyed by manifest digest; written beside and renamed into place."""
    root = cache_root / "rootfs"
    target = root / image.manifest.digest.hex
    if (target / "config.json").is_file():
        os.utime(target)  # last use, for pruning
        return target
    root.mkdir(parents=True, exist_ok=True)
    prune_stale(root)
    partial = root / f".partial-{uuid.uuid4().hex[:12]}"
    try:
        _unpack(image, partial, rootless=False)
        try:
            os.rename(partial, target)
        except OSError:  # another run finished the same unpack first
            if not (target / "config.json").is_file():
                raise
    finally:
        with shielded():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _unpack(image: Image, bundle: Path, rootless: bool) -> None:
    _, *layers = children(image.layout.read_json(image.manifest.digest), image.manifest.media_type)
    if any(layer.media_type == OCI_LAYER_ZSTD for layer in layers):  # umoci 0.4 knows gzip only
        raise CogbuildError(f"umoci cannot unpack the zstd-compressed layers of {image.name}; run it with podman "
                            "or containerd (--runtime), or build it with --compression gzip")
    with single_image_layout(image) as layout:
        unpack = ["umoci", "unpack", *(["--rootless"] if rootless else []),
                  "--image", f"{layout}:{RUN_REF}", str(bundle)]
        done = subprocess.run(unpack, capture_output=True, text=True)
    if done.returncode != 0:
        raise CogbuildError(f"umoci could not unpack {image.name}: {last_line(done.stderr)}")


def adjust_bundle_config(path: Path, env: dict[str, str], rootless: bool = False) -> None:
    """Make umoci's runtime config serve on the host: host network, no terminal, `env` set, DNS from the host.

    Rootless, the user namespace maps only the invoking user (as 0, owner of every unpacked file), so
    the process runs as that id instead of the image's user, which is not mapped.
    """
    config = json.loads(path.read_text())
    process = config.setdefault("process", {})
    process["terminal"] = False
    if rootless:
        process["user"] = {"uid": 0, "gid": 0}
    names = set(env)
    process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in names]
    process["env"] += [f"{key}={value}" for key, value in env.items()]
    linux = config.setdefault("linux", {})
    linux["namespaces"] = [ns for ns in linux.get("namespaces", []) if ns.get("type") != "network"]
    for host_file in ("/etc/resolv.conf", "/etc/hosts"):
        if Path(host_file).is_file():
            config.setdefault("mounts", []).append(
                {"destination": host_file, "type": "bind", "source": host_file, "options": ["rbind", "ro"]})
    path.write_text(json.dumps(config, indent=2))


@dataclass
class BundleContainer:
    runtime: BundleRuntime
    id: str
    base_url: str
    bundle: Path

    @property
    def log_path(self) -> Path:
        return self.bundle / "container.log"

    def logs(self) -> str:
        return read_log(self.log_path)

    def alive(self) -> bool:
        out = subprocess.run(self.runtime.command("state", self.id), capture_output=True, text=True)
        try:
            return out.returncode == 0 and json.loads(out.stdout).get("status") == "running"
        except ValueError:
            return False

    def follow_logs(self) -> Callable[[], None]:
        return follow_file(self.log_path)

    def remove(self) -> None:
        """Stop it (SIGTERM, SIGKILL after STOP_GRACE seconds), delete it and its bundle; never cut short."""
        with shielded():
            self._stop()
            run_detached(self.runtime.command("delete", "--force", self.id), capture_output=True)
            rootfs = self.bundle / "rootfs"
            if os.path.ismount(rootfs):  # an overlay on the cached unpack: detach it, never delete through it
                run_detached(["umount", "--lazy", str(rootfs)], capture_output=True)
            if not os.path.ismount(rootfs):
                shutil.rmtree(self.bundle, ignore_errors=True)

    def _stop(self) -> None:
        """The signal a container gets from `podman stop`, and the same grace before `delete --force` kills it."""
        if run_detached(self.runtime.command("kill", self.id, "TERM"), capture_output=True).returncode != 0:
            return  # not running (never started, or already gone)
        deadline = time.monotonic() + STOP_GRACE
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)


def read_log(path: Path) -> str:
    """What a container has written to its log file so far ("" before it wrote any)."""
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return ""


def follow_file(path: Path) -> Callable[[], None]:
    """Copy what a container writes to its log file to stderr as it comes; returns the function that stops."""
    stop = threading.Event()

    def copy() -> None:
        with open(path, "rb") as log:
            while True:
                chunk = log.read(65536)
                if chunk:
                    os.write(_STDERR, chunk)
                elif stop.wait(0.2):
                    return

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    def stop_copying() -> None:
        stop.set()
        thread.join()

    return stop_copying


# -- start, wait, clean up -----------------------------------------------------------------------
@contextmanager
def running_container(image: Image, runtime: Runtime, *, port: int | None = None,
                      env: dict[str, str] | None = None, gpu: bool = False,
                      on_status: Callable[[str], None] = lambda s: None,
                      timeout: float = DEFAULT_READY_TIMEOUT) -> Iterator[Container]:
    """Start `image`, wait until its server is READY (within `timeout` seconds), yield the container;
    remove it afterwards."""
    container = runtime.start(image, port or free_port(), env or {}, gpu)
    try:
        wait_ready(container.base_url, container.logs, timeout, on_status, container.alive)
        yield container
    finally:
        container.remove()


def wait_ready(base: str, logs: Callable[[], str] = lambda: "", timeout: float = DEFAULT_READY_TIMEOUT,
               on_status: Callable[[str], None] = lambda s: None,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll GET /health-check until READY; fail with the server's logs on SETUP_FAILED, exit or timeout
    (`timeout` seconds)."""
    deadline = time.monotonic() + timeout
    status, last_shown, checks = "unreachable", None, 0
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{base}/health-check", timeout=2).json()
            status = body.get("status", "?")
            if status == "READY":
                return
            if status in ("SETUP_FAILED", "DEFUNCT"):
                setup_logs = (body.get("setup") or {}).get("logs") or logs()
                raise ModelStartError(f"the model's setup failed: {_reason(setup_logs)}", setup_logs)
        except (httpx.HTTPError, ValueError):
            checks += 1
            if checks % 10 == 0 and not alive():  # the server exited before it ever answered
                output = logs()
                raise ModelStartError(f"the model server exited before it was ready: {_reason(output)}",
                                      output) from None
        shown = "starting" if status == "unreachable" else status.lower()
        if shown != last_shown:
            on_status(shown)
            last_shown = shown
        time.sleep(0.1)  # a local health check is cheap; a finer poll starts predictions sooner
    raise ModelStartError(f"the model did not become ready within {timeout:.0f} s (last status: {status.lower()}); "
                          "raise --timeout or COGBUILD_READY_TIMEOUT if its setup is slow", logs())
