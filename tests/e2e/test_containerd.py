"""The images in other runtimes, straight from a registry: containerd (what Kubernetes nodes run) through
`ctr`, podman with crun, and `cogbuild predict`/`run` on containerd; zstd layers in each.

One model (a greeter that can take its time) is locked for amd64 and arm64 and pushed once with gzip
layers and once with zstd ones (another SOURCE_DATE_EPOCH, so no runtime can reuse a gzip layer's
unpacked content) to a loopback docker-registry; a containerd of the module's own pulls from it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from cli_helpers import cogbuild, isolated_env, one_line_error
from components import require
from containerd_server import ContainerdServer
from oci_registry_server import RegistryServer, free_port

from cogbuild.container import ModelStartError, choose_runtime, crun_refuses_this_host, wait_ready
from cogbuild.errors import CogbuildError

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 120  # seconds; a cold start imports Python from freshly unpacked layers
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PREDICTOR = '''
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="Who to greet"),
                seconds: float = Input(description="How long to take", default=0.0, ge=0, le=60)) -> str:
        time.sleep(seconds)
        return f"hello {text}"
'''


@dataclass
class Pushed:
    repository: str  # registry host/name, no tag
    index: str  # the digest tag v1 names
    platforms: dict[str, str]  # architecture -> manifest digest
    zstd_layers: list[str]  # media types of the amd64 image pushed as :zstd
    config: dict  # the amd64 image's `config` (Env, User, WorkingDir, ...)

    @property
    def amd64(self) -> str:
        return self.platforms["amd64"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, registry) -> Pushed:
    root = tmp_path_factory.mktemp("containerd-model")
    model = root / "greeter"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    (model / "predict.py").write_text(PREDICTOR)
    env = isolated_env(root)
    repository = f"{registry.host}/models/greeter"
    for args, extra in ((["lock", "--platform", "linux/amd64,linux/arm64"], {}),
                        (["push", f"{repository}:v1"], {}),
                        (["push", "--compression", "zstd", f"{repository}:zstd"], {"SOURCE_DATE_EPOCH": "1"})):
        run = cogbuild(["-q", *args], model, {**env, **extra}, timeout=900)
        assert run.code == 0, f"cogbuild {' '.join(args)} failed:\n{run.err}"
    manifests = f"http://{registry.host}/v2/models/greeter/manifests"
    accept = {"Accept": f"{OCI_INDEX}, application/vnd.oci.image.manifest.v1+json"}
    index = httpx.get(f"{manifests}/v1", headers=accept)
    platforms = {m["platform"]["architecture"]: m["digest"] for m in index.json()["manifests"]}
    assert sorted(platforms) == ["amd64", "arm64"]
    zstd_index = httpx.get(f"{manifests}/zstd", headers=accept).json()
    zstd_amd64 = next(m["digest"] for m in zstd_index["manifests"] if m["platform"]["architecture"] == "amd64")
    zstd_layers = [layer["mediaType"] for layer in httpx.get(f"{manifests}/{zstd_amd64}", headers=accept).json()["layers"]]
    config_digest = httpx.get(f"{manifests}/{platforms['amd64']}", headers=accept).json()["config"]["digest"]
    config = httpx.get(f"http://{registry.host}/v2/models/greeter/blobs/{config_digest}").json()["config"]
    return Pushed(repository, index.headers["Docker-Content-Digest"], platforms, zstd_layers, config)


@pytest.fixture(scope="module")
def containerd(tmp_path_factory) -> Iterator[ContainerdServer]:
    require("containerd", "ctr", "runc")
    server = ContainerdServer(tmp_path_factory.mktemp("ctrd")).start()
    yield server
    server.stop()


def predict(base: str, **inputs) -> dict:
    response = httpx.post(f"{base}/predictions", json={"input": inputs}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def ready(base: str, logs: Callable[[], str], alive: Callable[[], bool]) -> None:
    try:
        wait_ready(base, logs, READY_TIMEOUT, alive=alive)
    except ModelStartError as exc:
        pytest.fail(f"{exc}; the container's output:\n{exc.details}")


def owner(pid: int) -> str:
    """The real uid:gid of a host process."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return f"{status['Uid'].split()[0]}:{status['Gid'].split()[0]}"


def assert_runs_as_configured(pid: int, config: dict) -> None:
    """The server process has the image's user, working directory and every variable of its Env."""
    assert owner(pid) == config["User"] == "1000:1000", "the server runs as the image's non-root user"
    assert os.readlink(f"/proc/{pid}/cwd") == config["WorkingDir"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    assert set(config["Env"]) <= set(environ), sorted(set(config["Env"]) - set(environ))
    assert "HOME=/home/cog" in environ, "HOME comes from the image's /etc/passwd entry for its user"


# -- containerd through ctr ------------------------------------------------------------------------
def test_containerd_pulls_by_tag_and_digest_and_picks_this_platform_from_the_index(containerd, pushed):
    repo = pushed.repository
    for ref in (f"{repo}:v1", f"{repo}:v1-cpu", f"{repo}@{pushed.index}", f"{repo}@{pushed.amd64}"):
        done = containerd.ctr("images", "pull", "--plain-http", ref, namespace="pulls")
        assert done.returncode == 0, f"ctr images pull {ref}: {done.stderr}"
    lines = containerd.ctr("images", "ls", namespace="pulls").stdout.splitlines()[1:]
    images = {line.split()[0]: line.split()[1:] for line in lines}  # name -> type, digest, size, unit, platforms
    for name in (f"{repo}:v1", f"{repo}:v1-cpu", f"{repo}@{pushed.index}"):  # cpu-only: the cpu tag is the index
        assert images[name][:2] == [OCI_INDEX, pushed.index], images
        assert images[name][4] == "linux/amd64,linux/arm64", images
    assert images[f"{repo}@{pushed.amd64}"][1] == pushed.amd64
    content = containerd.ctr("content", "ls", "--quiet", namespace="pulls").stdout.split()
    assert pushed.amd64 in content, "containerd fetched this host's image from the index"
    assert pushed.platforms["arm64"] not in content, "and not the other platform's"


@contextmanager
def ctr_serving(containerd: ContainerdServer, ref: str, name: str, log: Path,
                namespace: str = "default") -> Iterator[tuple[str, subprocess.Popen]]:
    """Pull `ref` and `ctr run` it in the foreground on the host network until READY: (base URL, ctr).
    Its task, container and snapshot are deleted afterwards."""
    pulled = containerd.ctr("images", "pull", "--plain-http", ref, namespace=namespace)
    assert pulled.returncode == 0, pulled.stderr
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(["ctr", "--address", containerd.address, "--namespace", namespace, "run",
                                    "--net-host", "--env", f"PORT={port}", ref, name], stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        ready(base, log.read_text, lambda: process.poll() is None)
        yield base, process
    finally:
        containerd.ctr("tasks", "delete", "--force", name, namespace=namespace)
        containerd.ctr("containers", "delete", name, namespace=namespace)
        if process.poll() is None:
            process.kill()
        process.wait(10)


def wait_for_status(base: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/health-check", timeout=2).json().get("status") == status:
            return
        time.sleep(0.05)
    pytest.fail(f"the server never reported {status}")


def test_ctr_run_serves_as_the_images_user_and_drains_on_sigterm(containerd, pushed, tmp_path):
    log = tmp_path / "ctr.log"
    with ctr_serving(containerd, f"{pushed.repository}:v1", "drain", log) as (base, process):
        body = predict(base, text="containerd")
        assert body["status"] == "succeeded" and body["output"] == "hello containerd", body
        task = next(line.split() for line in containerd.ctr("tasks", "ls").stdout.splitlines()
                    if line.startswith("drain "))
        assert_runs_as_configured(int(task[1]), pushed.config)

        slow: dict = {}
        worker = threading.Thread(target=lambda: slow.update(predict(base, text="slow", seconds=3)))
        worker.start()
        wait_for_status(base, "BUSY")
        assert containerd.ctr("tasks", "kill", "drain").returncode == 0  # ctr's default signal: SIGTERM
        worker.join(60)
        assert slow.get("status") == "succeeded" and slow["output"] == "hello slow", \
            "the prediction in flight when SIGTERM came finishes"
        assert process.wait(60) == 0, f"the server exits 0 once drained:\n{log.read_text()}"
        assert "cog: shutting down" in log.read_text()


# -- podman with crun ------------------------------------------------------------------------------
def _crun_host() -> list[str]:
    """A prefix that lets crun run on this host. crun 1.8 refuses cgroup hybrid hosts whose v2 hierarchy
    holds a controller, as this machine's does (hugetlb): that is the host, not the image. In a private
    mount namespace without the v2 mount, crun sees a v1 host."""
    if not crun_refuses_this_host():
        return []
    require("unshare")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'umount /sys/fs/cgroup/unified && exec "$@"', "crun-host"]


@dataclass
class Podman:
    command: list[str]
    env: dict[str, str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], capture_output=True, text=True, env=self.env, timeout=300)


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Podman:
    """podman with crun and storage of its own (nothing pulled before, nothing left behind)."""
    crun = require("crun", "podman")
    root = tmp_path_factory.mktemp("podman")
    conf = root / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    return Podman([*_crun_host(), "podman", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                   "--cgroup-manager=cgroupfs", "--runtime", crun], {**os.environ, "CONTAINERS_CONF": str(conf)})


@contextmanager
def podman_serving(podman: Podman, ref: str) -> Iterator[tuple[str, str]]:
    port = free_port()
    name = f"crun-{port}"
    started = podman("run", "-d", "--rm", "--name", name, "--network", "host", "--tls-verify=false",
                     "-e", f"PORT={port}", ref)
    assert started.returncode == 0, started.stderr
    try:
        base = f"http://127.0.0.1:{port}"
        ready(base, lambda: podman("logs", name).stdout, lambda: podman("inspect", name).returncode == 0)
        yield base, name
    finally:
        podman("rm", "-f", "-t", "2", name)


def test_podman_with_crun_serves_the_pushed_image_as_its_user(podman, pushed):
    with podman_serving(podman, f"{pushed.repository}:v1") as (base, name):
        body = predict(base, text="crun")
        assert body["status"] == "succeeded" and body["output"] == "hello crun", body
        runtime = podman("inspect", "--format", "{{.OCIRuntime}} {{.State.Pid}}", name).stdout.split()
        assert Path(runtime[0]).name == "crun"
        assert_runs_as_configured(int(runtime[1]), pushed.config)


# -- zstd layers -----------------------------------------------------------------------------------
def test_zstd_layers_run_in_containerd_and_podman_but_umoci_needs_gzip(containerd, podman, pushed, tmp_path):
    assert set(pushed.zstd_layers) == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    ref = f"{pushed.repository}:zstd"
    with ctr_serving(containerd, ref, "zstd", tmp_path / "ctr.log", namespace="zstd") as (base, _):
        assert predict(base, text="zstd")["output"] == "hello zstd"
    with podman_serving(podman, ref) as (base, _):
        assert predict(base, text="zstd")["output"] == "hello zstd"
    require("umoci", "runc")
    run = cogbuild(["predict", ref, "--runtime", "runc", "-i", "text=zstd"], tmp_path, isolated_env(tmp_path))
    assert run.code == 1
    assert one_line_error(run).startswith("umoci cannot unpack the zstd-compressed layers of")


# -- cogbuild predict and run on containerd --------------------------------------------------------
def _containerd_env(containerd: ContainerdServer, root: Path) -> dict[str, str]:
    return isolated_env(root, COGBUILD_RUNTIME="containerd", CONTAINERD_ADDRESS=containerd.address,
                        CONTAINERD_NAMESPACE="cogbuild")


def _left_in_containerd(containerd: ContainerdServer) -> list[str]:
    return [*containerd.ctr("tasks", "ls", "--quiet", namespace="cogbuild").stdout.split(),
            *containerd.ctr("containers", "ls", "--quiet", namespace="cogbuild").stdout.split()]


def test_cogbuild_predict_with_containerd(containerd, pushed, tmp_path):
    run = cogbuild(["predict", f"{pushed.repository}:v1", "-i", "text=cogbuild"], tmp_path,
                   _containerd_env(containerd, tmp_path))
    assert run.code == 0, run.err
    assert run.out.strip() == "hello cogbuild"
    assert "with containerd" in run.err
    assert _left_in_containerd(containerd) == []


def test_cogbuild_run_with_containerd_serves_until_sigterm_and_cleans_up(containerd, pushed, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "run", f"{pushed.repository}:v1", "-p", str(port)],
                            cwd=tmp_path, env=_containerd_env(containerd, tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # printed once the model is READY
        assert url == f"http://127.0.0.1:{port}", proc.stderr.read() if proc.poll() is not None else url
        assert predict(url, text="served")["output"] == "hello served"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, proc.stderr.read()
    assert _left_in_containerd(containerd) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health-check", timeout=2)


def test_ctrl_c_during_a_prediction_in_containerd_removes_the_container(containerd, pushed, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "predict", f"{pushed.repository}:v1",
                             "-i", "text=never", "-i", "seconds=60"], cwd=tmp_path,
                            env=_containerd_env(containerd, tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # the prediction is running once cogbuild says so
            seen.append(line)
            if "predicting" in line:
                break
        running = containerd.ctr("tasks", "ls", "--quiet", namespace="cogbuild").stdout.split()
        assert len(running) == 1, "".join(seen)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, err
    assert _left_in_containerd(containerd) == []


def test_containerd_is_chosen_when_it_answers_and_neither_podman_nor_docker_is_installed(containerd, tmp_path,
                                                                                        monkeypatch, cache_root):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ctr").symlink_to(shutil.which("ctr"))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CONTAINERD_ADDRESS", containerd.address)
    assert choose_runtime(cache_root=cache_root).name == "containerd"
    monkeypatch.setenv("CONTAINERD_ADDRESS", str(tmp_path / "absent.sock"))
    with pytest.raises(CogbuildError, match="no container runtime found"):  # one that does not answer is passed over
        choose_runtime(cache_root=cache_root)


def test_a_containerd_that_does_not_answer_is_one_sentence(pushed, tmp_path):
    require("ctr")
    env = isolated_env(tmp_path, CONTAINERD_ADDRESS=str(tmp_path / "absent.sock"))
    run = cogbuild(["predict", f"{pushed.repository}:v1", "--runtime", "containerd", "-i", "text=x"], tmp_path, env)
    assert run.code == 1
    assert one_line_error(run) == f"containerd does not answer at {tmp_path / 'absent.sock'}: start it, or point " \
                                  "CONTAINERD_ADDRESS at its socket"
