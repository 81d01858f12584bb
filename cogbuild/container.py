"""Run an image in a container runtime and reach the Cog HTTP API inside it on a loopback port.

Three ways to run, one interface (`Container`):
  * podman or docker, with host networking so the server's `PORT` is on this host's loopback;
  * daemonless: `umoci unpack` the image into a bundle and start it with `runc` (or `crun`), the
    bundle's config.json adjusted for the host network namespace and no terminal.

Every runtime starts from one manifest that cogbuild picked (this host's platform; the gpu variant when a
GPU is present and the runtime can pass it through), presented as a throw-away OCI layout that links to
the local store's blobs. A registry reference is first pulled into the local store (verified blob by blob),
so the image's schema label is known before anything starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import httpx

from .cache import cache_dir
from .errors import CogbuildError, UsageError
from .layers.descriptor import Descriptor
from .registry.layout import REF_ANNOTATION, Layout, LayoutError, atomic_write
from .registry.reference import parse_reference

READY_TIMEOUT = float(os.environ.get("COGBUILD_READY_TIMEOUT", "300"))
RUNTIMES = ("podman", "docker", "runc", "crun")
SCHEMA_LABELS = ("run.cog.openapi_schema", "run.cog.openapi-schema")
VARIANT_ANNOTATION = "run.cog.variant"
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_RUN_REF = "run"  # the one ref in the throw-away layout handed to a runtime
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


def host_platform() -> str:
    return f"linux/{_ARCH.get(platform.machine().lower(), platform.machine().lower())}"


# -- which image ---------------------------------------------------------------------------------
@dataclass
class Image:
    """One runnable manifest: where its blobs are, which manifest, and its config."""

    layout: Layout
    name: str
    manifest: Descriptor
    config: dict = field(repr=False)

    @property
    def variant(self) -> str:
        return self.manifest.annotations.get(VARIANT_ANNOTATION, "cpu")

    @property
    def schema(self) -> dict | None:
        """The OpenAPI schema the build stored as a label, when it did."""
        labels = (self.config.get("config") or {}).get("Labels") or {}
        for key in SCHEMA_LABELS:
            if labels.get(key):
                try:
                    return json.loads(labels[key])
                except ValueError:
                    raise CogbuildError(f"the image {self.name} has a damaged {key} label (not JSON)") from None
        return None


def find_image(target: str, store: Layout, gpu: bool, progress: Callable[[str], None] = lambda m: None,
               transfer: Callable[[str, int, int], None] | None = None) -> Image:
    """Resolve what the user typed: an OCI layout path (`oci:DIR[:TAG]` or a directory), a local store
    name, or a registry reference (pulled into the store; `transfer` hears of its bytes)."""
    layout, name = _locate(target, store, progress, transfer)
    try:
        top = layout.resolve(name)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None
    try:
        manifest = _pick_manifest(layout, top, target, host_platform(), "gpu" if gpu else "cpu")
        doc = layout.read_json(manifest.digest)
        return Image(layout, target, manifest, layout.read_json(doc["config"]["digest"]))
    except (LayoutError, ValueError, KeyError) as exc:
        raise CogbuildError(f"the image {target} in {layout.root} is damaged: {exc}; pull or build it again") from None


def _locate(target: str, store: Layout, progress: Callable[[str], None],
            transfer: Callable[[str, int, int], None] | None) -> tuple[Layout, str]:
    if target.startswith("oci-archive:"):
        return _layout_path(_unpacked_archive(target.removeprefix("oci-archive:")))
    if target.startswith("oci:") or _split_layout(target):
        return _layout_path(target.removeprefix("oci:"))
    known = {name for name, _ in store.refs()}
    for name in (target, f"{target}:latest"):
        if name in known:
            return store, name
    ref = parse_reference(target)
    # Like `docker run`: what the store already holds runs as is; only a missing image is pulled.
    for name in (str(ref), str(ref.with_tag("latest")) if not (ref.tag or ref.digest) else ""):
        if name in known:
            return store, name
    if ref.registry == "docker.io" and "." not in target.split("/")[0]:
        raise UsageError(f"no image named {target!r} in the local store ({store.root}); build it with "
                         f"`cogbuild build -t {target}` or name a registry, like 127.0.0.1:5000/{target}")
    from .registry.remote import pull_image  # network clients load only when a pull is needed

    progress(f"pulling {ref}")
    try:
        top = pull_image(ref, store, insecure=ref.is_loopback, progress=transfer)
    except httpx.TransportError as exc:  # registry answers become RegistryError sentences already
        raise CogbuildError(f"could not reach {ref.registry} to pull {ref}: {exc}") from None
    return store, next(name for name, desc in store.refs() if desc.digest == top.digest)


def _unpacked_archive(text: str) -> str:
    """`FILE[:TAG]` of an OCI archive, as `DIR[:TAG]` of its layout unpacked into the cache.

    Unpacked once per file version (path, size, mtime), written beside and renamed into place; the
    layout's blobs are verified by hash when read, like any layout's."""
    path, tag = text, None
    if not Path(text).is_file() and ":" in text:
        path, _, tag = text.partition(":")
    archive = Path(path)
    if not archive.is_file():
        raise UsageError(f"there is no OCI archive {path}")
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    target = cache_dir() / "archives" / key
    if (target / "oci-layout").is_file():
        os.utime(target)  # last use, for pruning
    else:
        if target.parent.is_dir():
            _prune_unpacks(target.parent)
        partial = target.with_name(f".partial-{uuid.uuid4().hex[:12]}")
        partial.mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")  # no links out, no devices, no absolute paths
            if not (partial / "oci-layout").is_file():
                raise UsageError(f"{path} is not an OCI archive (it has no oci-layout file)")
            if not target.exists():  # else another run unpacked the same archive first
                os.replace(partial, target)
        except tarfile.ReadError:
            raise UsageError(f"{path} is not an OCI archive (it is not a tar file)") from None
        except (tarfile.TarError, OSError) as exc:
            raise UsageError(f"{path} cannot be read as an OCI archive: {exc}") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return f"{target}:{tag}" if tag else str(target)


def _is_layout(path: str) -> bool:
    return bool(path) and (Path(path) / "oci-layout").is_file()


def _split_layout(text: str) -> tuple[str, str | None] | None:
    """`DIR` or `DIR:NAME` when DIR is an OCI layout (NAME may hold colons, like `model:v1`)."""
    if _is_layout(text):
        return text, None
    for i, char in enumerate(text):
        if char == ":" and _is_layout(text[:i]):
            return text[:i], text[i + 1:]
    return None


def _layout_path(text: str) -> tuple[Layout, str]:
    found = _split_layout(text)
    if found is None:
        raise UsageError(f"{text} is not an OCI image layout (it has no oci-layout file)")
    path, name = Path(found[0]), found[1]
    layout = Layout(path)
    names = [ref for ref, _ in layout.refs()]
    if name is None:
        if len(names) != 1:
            raise UsageError(f"the OCI layout {path} holds {len(names)} named images; name one as oci:{path}:TAG "
                             f"({', '.join(names) or 'none'})")
        name = names[0]
    return layout, name


def _pick_manifest(layout: Layout, top: Descriptor, target: str, want_platform: str, want_variant: str) -> Descriptor:
    """The manifest for this platform, preferring the wanted variant and falling back to cpu."""
    leaves = list(_leaf_manifests(layout, top))
    here = [d for d in leaves if _platform_of(layout, d) == want_platform]
    if not here:
        have = sorted({_platform_of(layout, d) for d in leaves})
        raise UsageError(f"the image {target} has no {want_platform} image (it has {', '.join(have)})")
    for variant in (want_variant, "cpu"):
        for desc in here:
            if desc.annotations.get(VARIANT_ANNOTATION, "cpu") == variant:
                return desc
    return here[0]


def _leaf_manifests(layout: Layout, desc: Descriptor) -> Iterator[Descriptor]:
    if desc.media_type not in _INDEX_TYPES:
        yield desc
        return
    for child in layout.read_json(desc.digest).get("manifests", []):
        child_desc = Descriptor.from_json(child)
        if child_desc.media_type in _INDEX_TYPES or "manifest" in child_desc.media_type:
            yield from _leaf_manifests(layout, child_desc)


def _platform_of(layout: Layout, desc: Descriptor) -> str:
    if desc.platform:
        return f"{desc.platform.get('os')}/{desc.platform.get('architecture')}"
    config = layout.read_json(layout.read_json(desc.digest)["config"]["digest"])
    return f"{config.get('os')}/{config.get('architecture')}"


@contextmanager
def single_image_layout(image: Image) -> Iterator[Path]:
    """A temporary OCI layout naming only `image.manifest` (as `run`); its blobs link to the store's."""
    root = Path(tempfile.mkdtemp(prefix="cogbuild-image-"))
    try:
        _write_single_layout(image, root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_single_layout(image: Image, root: Path) -> None:
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    link = root / f".blobs-{uuid.uuid4().hex[:8]}"
    link.symlink_to((image.layout.root / "blobs").resolve())
    os.replace(link, root / "blobs")  # atomic: a concurrent run always sees a whole link
    entry = {**image.manifest.to_json(), "annotations": {REF_ANNOTATION: _RUN_REF}}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    atomic_write(root / "index.json", json.dumps(index).encode())


_REFERENCE_PATH = re.compile(r"(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")


def podman_image_layout(image: Image) -> Path:
    """A lasting single-image layout at a path named by the manifest digest.

    podman names what it copies from `oci:PATH` after PATH, so PATH must be a valid image name
    (lowercase, no component starting with a dot) and stable, or every run would add a new name.
    """
    parent = Path(tempfile.gettempdir()).resolve()
    if not _REFERENCE_PATH.fullmatch(str(parent)):
        parent = Path("/tmp")
    root = parent / f"cogbuild-oci-{os.geteuid()}" / image.manifest.digest.split(":")[1][:32]
    root.mkdir(parents=True, exist_ok=True)
    _write_single_layout(image, root)
    return root


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


def choose_runtime(name: str | None = None) -> Runtime:
    """The runtime named, or the first available: podman, docker (with a reachable daemon), runc, crun."""
    if name:
        if name not in RUNTIMES:
            raise UsageError(f"unknown container runtime {name!r} (choose from {', '.join(RUNTIMES)})")
        if not shutil.which(name):
            raise UsageError(f"the container runtime {name!r} is not installed (not on PATH)")
        if name in ("runc", "crun") and not shutil.which("umoci"):
            raise UsageError(f"running with {name} needs umoci to unpack the image; install it (apt-get install umoci)")
        return EngineRuntime(name) if name in ("podman", "docker") else BundleRuntime(name)
    if shutil.which("podman"):
        return EngineRuntime("podman")
    if shutil.which("docker") and _docker_daemon_answers():
        return EngineRuntime("docker")
    for program in ("runc", "crun"):
        if shutil.which(program) and shutil.which("umoci"):
            return BundleRuntime(program)
    raise CogbuildError("no container runtime found: install podman, docker, or umoci with runc "
                        "(apt-get install podman runc umoci)")


def _docker_daemon_answers() -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _containers_conf() -> str:
    """podman refuses to start on hosts whose hard ulimits it cannot copy; an empty default list avoids it."""
    if os.environ.get("CONTAINERS_CONF"):
        return os.environ["CONTAINERS_CONF"]
    path = Path(tempfile.gettempdir()) / "cogbuild-containers.conf"
    if not path.exists():
        path.write_text("[containers]\ndefault_ulimits = []\n")
    return str(path)


@dataclass
class EngineRuntime:
    """podman or docker: the image is handed over as a layout (podman) or an OCI archive (docker load)."""

    name: str

    def command(self, *args: str) -> list[str]:
        return [self.name, *args]  # podman picks its OCI runtime and cgroup manager from the host

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.name == "podman":
            env["CONTAINERS_CONF"] = _containers_conf()
        return env

    def gpu_flags(self) -> list[str]:
        return ["--device", "nvidia.com/gpu=all"] if self.name == "podman" else ["--gpus", "all"]

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> "EngineContainer":
        args = ["run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        if gpu:
            args += self.gpu_flags()
        if self.name == "podman":
            target = f"oci:{podman_image_layout(image)}:{_RUN_REF}"
        else:
            target = self._docker_load(image)
        started = subprocess.run(self.command(*args, target), capture_output=True, text=True, env=self.env())
        if started.returncode != 0:
            raise CogbuildError(f"{self.name} could not start {image.name}: {_last_line(started.stderr)}")
        return EngineContainer(self, _last_line(started.stdout), f"http://127.0.0.1:{port}")

    def _docker_load(self, image: Image) -> str:
        """docker runs only what its daemon stores: load the manifest as an OCI archive, named by digest."""
        name = f"cogbuild.local/run:{image.manifest.digest.split(':')[1][:32]}"
        with tempfile.TemporaryFile() as archive:
            write_oci_archive(image, archive, name)
            archive.seek(0)
            loaded = subprocess.run(self.command("load"), stdin=archive, capture_output=True, text=True)
        if loaded.returncode != 0:
            raise CogbuildError(f"docker could not load {image.name}: {_last_line(loaded.stderr)}")
        return name


def write_oci_archive(image: Image, fileobj, name: str) -> None:
    """An OCI archive (a tarred layout) holding only `image.manifest`, named `name` for docker/containerd."""
    entry = {**image.manifest.to_json(),
             "annotations": {"io.containerd.image.name": name, REF_ANNOTATION: name.rpartition(":")[2]}}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry]}).encode()
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for member, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for digest in _blob_digests(image):
            tar.add(image.layout.blob_path(digest), f"blobs/sha256/{digest.split(':')[1]}")


def _blob_digests(image: Image) -> list[str]:
    doc = image.layout.read_json(image.manifest.digest)
    return [image.manifest.digest, doc["config"]["digest"], *(layer["digest"] for layer in doc.get("layers", []))]


@dataclass
class EngineContainer:
    runtime: EngineRuntime
    id: str
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
        return lambda: (follower.terminate(), follower.wait())

    def remove(self) -> None:
        subprocess.run(self.runtime.command("rm", "-f", "-t", "2", self.id), capture_output=True,
                       env=self.runtime.env())


@dataclass
class BundleRuntime:
    """Daemonless: `umoci unpack` the image into an OCI runtime bundle, then `runc run -d` (or crun)."""

    name: str

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> "BundleContainer":
        bundles = cache_dir() / "bundles"
        bundles.mkdir(parents=True, exist_ok=True)
        container_id = f"cogbuild-{uuid.uuid4().hex[:12]}"
        container = BundleContainer(self, container_id, f"http://127.0.0.1:{port}", bundles / container_id)
        try:
            prepare_bundle(image, container.bundle)
            adjust_bundle_config(container.bundle / "config.json", {"PORT": str(port), **env},
                                 rootless=os.geteuid() != 0)
            with open(container.log_path, "wb") as log:
                started = subprocess.run(self.command("run", "--detach", "--bundle", str(container.bundle),
                                                      container_id), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if started.returncode != 0:
                raise CogbuildError(f"{self.name} could not start {image.name}: {_last_line(container.logs())}")
            return container
        except BaseException:
            container.remove()
            raise

    def command(self, *args: str) -> list[str]:
        rootless = ["--rootless", "true"] if os.geteuid() != 0 and self.name == "runc" else []
        return [self.name, *rootless, *args]


def prepare_bundle(image: Image, bundle: Path) -> None:
    """An OCI runtime bundle for `image` at `bundle`.

    As root: the image is unpacked once per manifest into the cache (umoci hashes every file, seconds
    for a small image) and each container gets an overlay on top of it, so runs start at once and
    never change the cached tree. Otherwise, or when overlay mounts are refused: a fresh unpack.
    """
    if os.geteuid() == 0 and shutil.which("mount") and shutil.which("umount"):
        unpacked = _cached_unpack(image)
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


def _cached_unpack(image: Image) -> Path:
    """The image unpacked once, keyed by manifest digest; written beside and renamed into place."""
    root = cache_dir() / "rootfs"
    target = root / image.manifest.digest.split(":")[1]
    if (target / "config.json").is_file():
        os.utime(target)  # last use, for pruning
        return target
    root.mkdir(parents=True, exist_ok=True)
    _prune_unpacks(root)
    partial = root / f".partial-{uuid.uuid4().hex[:12]}"
    try:
        _unpack(image, partial, rootless=False)
        try:
            os.rename(partial, target)
        except OSError:  # another run finished the same unpack first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


UNPACK_MAX_AGE = 7 * 24 * 3600


def _prune_unpacks(root: Path, max_age: float = UNPACK_MAX_AGE) -> None:
    """Drop cached unpacks (rootfs trees, archive layouts) unused for `max_age` seconds, unless a running
    container still sits on one."""
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return  # cannot tell what is in use: keep everything
    for entry in root.iterdir():
        stale = time.time() - entry.lstat().st_mtime > max_age
        if stale and f"lowerdir={entry}/" not in mounts:
            shutil.rmtree(entry, ignore_errors=True)


def _unpack(image: Image, bundle: Path, rootless: bool) -> None:
    with single_image_layout(image) as layout:
        unpack = ["umoci", "unpack", *(["--rootless"] if rootless else []),
                  "--image", f"{layout}:{_RUN_REF}", str(bundle)]
        done = subprocess.run(unpack, capture_output=True, text=True)
    if done.returncode != 0:
        raise CogbuildError(f"umoci could not unpack {image.name}: {_last_line(done.stderr)}")


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
        try:
            return self.log_path.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        out = subprocess.run(self.runtime.command("state", self.id), capture_output=True, text=True)
        try:
            return out.returncode == 0 and json.loads(out.stdout).get("status") == "running"
        except ValueError:
            return False

    def follow_logs(self) -> Callable[[], None]:
        stop = threading.Event()

        def copy() -> None:
            with open(self.log_path, "rb") as log:
                while True:
                    chunk = log.read(65536)
                    if chunk:
                        os.write(_STDERR, chunk)
                    elif stop.wait(0.2):
                        return

        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        return lambda: (stop.set(), thread.join())

    def remove(self) -> None:
        subprocess.run(self.runtime.command("delete", "--force", self.id), capture_output=True)
        rootfs = self.bundle / "rootfs"
        if os.path.ismount(rootfs):  # an overlay on the cached unpack: detach it, never delete through it
            subprocess.run(["umount", "--lazy", str(rootfs)], capture_output=True)
        if not os.path.ismount(rootfs):
            shutil.rmtree(self.bundle, ignore_errors=True)


# -- start, wait, clean up -----------------------------------------------------------------------
@contextmanager
def running_container(image: Image, runtime: Runtime, *, port: int | None = None,
                      env: dict[str, str] | None = None, gpu: bool = False,
                      on_status: Callable[[str], None] = lambda s: None,
                      timeout: float = READY_TIMEOUT) -> Iterator[Container]:
    """Start `image`, wait until its server is READY, yield the container; remove it afterwards."""
    container = runtime.start(image, port or free_port(), env or {}, gpu)
    try:
        wait_ready(container.base_url, container.logs, timeout, on_status, container.alive)
        yield container
    finally:
        container.remove()


def wait_ready(base: str, logs: Callable[[], str] = lambda: "", timeout: float = READY_TIMEOUT,
               on_status: Callable[[str], None] = lambda s: None,
               alive: Callable[[], bool] = lambda: True) -> None:
    """Poll GET /health-check until READY; fail with the server's logs on SETUP_FAILED, exit or timeout."""
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
                raise ModelStartError(f"the model server exited before it was ready: {_reason(output)}", output)
        shown = "starting" if status == "unreachable" else status.lower()
        if shown != last_shown:
            on_status(shown)
            last_shown = shown
        time.sleep(0.1)  # a local health check is cheap; a finer poll starts predictions sooner
    raise ModelStartError(f"the model did not become ready within {timeout:.0f} s (last status: {status.lower()}); "
                          "raise --timeout or COGBUILD_READY_TIMEOUT if its setup is slow", logs())
