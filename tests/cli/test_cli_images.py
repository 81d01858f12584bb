"""`predict` and `run` on real built images: podman, daemonless umoci + runc, a loopback registry; and
`init` -> `build` -> `predict` on a fresh directory.

One image of the file-in/file-out test model is built per session (network to Debian and PyPI) into a
store and cache of the session's own; the tests share it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from cogbuild.container import BundleContainer, BundleRuntime
from cogbuild.images import RUN_REF, find_image, podman_image_layout
from cogbuild.registry.layout import Layout
from cogbuild.registry.referrers import find_referrers
from cogbuild.signing import SIGNATURE_ARTIFACT_TYPE
from cli_helpers import cogbuild, copy_model, isolated_env, one_line_error, require
from components import podman_command
from oci_registry_server import RegistryServer
from unprivileged import NOBODY, unprivileged_cogbuild

pytestmark = pytest.mark.e2e

IMAGE = "filetest:e2e"


@dataclass
class Built:
    root: Path
    env: dict[str, str]
    model: Path

    @property
    def bundles(self) -> Path:
        return Path(self.env["COGBUILD_CACHE"]) / "bundles"

    def present_bundles(self) -> set[str]:
        return {p.name for p in self.bundles.iterdir()} if self.bundles.exists() else set()


@dataclass
class OwnBundles:
    """The daemonless containers (bundles named by container id) one test made, told apart from any
    another test left behind: a test judges and removes only its own, so one failure stays one failure."""

    built: Built
    before: set[str]

    def made(self) -> list[str]:
        return sorted(self.built.present_bundles() - self.before)

    def remove(self) -> None:
        for name in self.made():
            BundleContainer(BundleRuntime("runc", self.built.bundles.parent), name, "", self.built.bundles / name).remove()


@pytest.fixture
def bundles(built) -> Iterator[OwnBundles]:
    own = OwnBundles(built, built.present_bundles())
    yield own
    own.remove()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("cli-images")
    model = copy_model("filecopy", root / "filecopy")
    env = isolated_env(root)
    run = cogbuild(["build", "-t", IMAGE], model, env)
    assert run.code == 0, f"building the test model failed:\n{run.err}"
    return Built(root, env, model)


@pytest.fixture
def podman_env(built) -> dict[str, str]:
    require("podman", "runc")
    return built.env


@pytest.fixture
def runc_env(built) -> dict[str, str]:
    require("umoci", "runc")
    return built.env


def test_predict_in_podman_file_in_file_out(tmp_path, podman_env):
    (tmp_path / "in.txt").write_text("through podman")
    run = cogbuild(["predict", IMAGE, "--runtime", "podman", "-i", "image=@in.txt", "-o", "got.txt"],
                   tmp_path, podman_env)
    assert run.code == 0, run.err
    assert run.out == "" and "Written output to: got.txt" in run.err
    assert (tmp_path / "got.txt").read_text() == "copied:through podman"
    assert "with podman" in run.err


def test_predict_batch_in_podman_starts_once_and_reports_each_line(tmp_path, podman_env):
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "inputs.jsonl").write_text(
        '{"image": "@a.txt"}\n{"image": "http://127.0.0.1:9/gone.txt"}\n{"image": "@b.txt", "upper": true}\n')
    run = cogbuild(["predict", IMAGE, "--runtime", "podman", "--batch", "inputs.jsonl", "-o", "outputs.jsonl"],
                   tmp_path, podman_env)
    assert run.code == 1, run.err
    assert one_line_error(run) == "1 of 3 predictions failed; their errors are in their lines of outputs.jsonl"
    assert run.err.count("with podman") == 1  # one container for the whole batch
    results = [json.loads(line) for line in (tmp_path / "outputs.jsonl").read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in results] == [(1, "succeeded"), (2, "failed"), (3, "succeeded")]
    assert results[1]["error"] and results[1]["output"] is None
    outputs = [base64.b64decode(r["output"].partition(",")[2]) for r in (results[0], results[2])]
    assert outputs == [b"copied:first", b"copied:SECOND"]


def test_the_kubernetes_job_pod_runs_in_podman_as_its_manifest_says(cache_root, tmp_path, podman_env):
    """What the kubelet would do with the Job's pod: its user, command and args, the ConfigMap at its mount
    path, the completion index; the image's own batch runner answers with one line per input."""
    data = "data:text/plain;base64," + base64.b64encode(b"pod").decode()
    (tmp_path / "inputs.jsonl").write_text(json.dumps({"image": data}) + "\n"
                                           '{"image": "http://127.0.0.1:9/gone.txt"}\n'
                                           + json.dumps({"image": data, "upper": True}) + "\n")
    run = cogbuild(["deploy", "kubernetes", IMAGE, "--repository", "registry.example.com/filetest", "--job",
                    "inputs.jsonl"], tmp_path, podman_env)
    assert run.code == 0, run.err
    configmap, job = yaml.safe_load_all(run.out)
    pod = job["spec"]["template"]["spec"]
    container, security = pod["containers"][0], pod["securityContext"]
    (mount := tmp_path / "configmap").mkdir()
    for name, text in configmap["data"].items():
        (mount / name).write_text(text)
    image = find_image(IMAGE, Layout(Path(podman_env["COGBUILD_STORE"])), gpu=False, cache_root=cache_root)
    assert container["image"].endswith(image.manifest.digest)
    user = f"{security['runAsUser']}:{security['runAsGroup']}"
    done = subprocess.run(
        [*podman_command(), "run", "--rm", "--network", "none", "--user", user, "-e", "JOB_COMPLETION_INDEX=0",
         "-v", f"{mount}:{container['volumeMounts'][0]['mountPath']}:ro",
         "--entrypoint", json.dumps(container["command"]), f"oci:{podman_image_layout(image)}:{RUN_REF}",
         *container["args"]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stderr  # some failed: the podFailurePolicy's FailIndex code
    assert 3 in [rule["onExitCodes"]["values"][0] for rule in job["spec"]["podFailurePolicy"]["rules"]
                 if rule["action"] == "FailIndex"]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["line"], r["status"]) for r in results] == [(1, "succeeded"), (2, "failed"), (3, "succeeded")]
    outputs = [base64.b64decode(r["output"].partition(",")[2]) for r in (results[0], results[2])]
    assert outputs == [b"copied:pod", b"copied:POD"]


def test_predict_with_umoci_and_runc_file_in_file_out(tmp_path, runc_env, built, bundles):
    (tmp_path / "in.md").write_text("daemonless")
    run = cogbuild(["predict", IMAGE, "--runtime", "runc", "-i", "@in.md", "-i", "upper=true"], tmp_path, runc_env)
    assert run.code == 0, run.err
    assert "Written output to: output.md" in run.err
    assert (tmp_path / "output.md").read_text() == "copied:DAEMONLESS"
    assert bundles.made() == [], "the container's bundle must be removed"
    if os.geteuid() == 0:  # as root each run is an overlay on one cached unpack, which runs never change
        cached = list((Path(runc_env["COGBUILD_CACHE"]) / "rootfs").glob("*/rootfs"))
        assert len(cached) == 1
        assert list((cached[0] / "tmp").iterdir()) == [], "the model's writes belong to the run, not the cache"
        assert not list((cached[0] / "src").glob("__pycache__"))
        with open("/proc/mounts") as mounts:
            assert str(built.bundles) not in mounts.read()


def test_daemonless_is_chosen_when_neither_podman_nor_docker_is_on_path(tmp_path, runc_env, built):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("umoci", "runc"):
        (bin_dir / program).symlink_to(subprocess.check_output(["which", program], text=True).strip())
    (tmp_path / "in.txt").write_text("auto")
    run = cogbuild(["predict", IMAGE, "-i", "image=@in.txt"], tmp_path, {**runc_env, "PATH": str(bin_dir)})
    assert run.code == 0, run.err
    assert "with runc" in run.err
    assert (tmp_path / "output.txt").read_text() == "copied:auto"


def test_predict_an_oci_layout_path(tmp_path, runc_env):
    store = Path(runc_env["COGBUILD_STORE"])
    (tmp_path / "in.txt").write_text("layout")
    run = cogbuild(["predict", f"oci:{store}:{IMAGE}", "--runtime", "runc", "-i", "image=@in.txt", "--json"],
                   tmp_path, {**runc_env, "COGBUILD_STORE": str(tmp_path / "empty-store")})
    assert run.code == 0, run.err
    assert '"status": "succeeded"' in run.out


def test_predict_an_oci_archive_from_build_output(tmp_path, runc_env, built):
    archive = tmp_path / "filetest.tar"
    out = cogbuild(["build", "--output", f"oci-archive:{archive}"], built.model, runc_env)
    assert out.code == 0, out.err
    (tmp_path / "in.txt").write_text("archived")
    run = cogbuild(["predict", f"oci-archive:{archive}", "--runtime", "runc", "-i", "image=@in.txt"], tmp_path,
                   {**runc_env, "COGBUILD_STORE": str(tmp_path / "empty-store")})
    assert run.code == 0, run.err
    assert (tmp_path / "output.txt").read_text() == "copied:archived"


@pytest.fixture
def registry(tmp_path) -> Iterator[RegistryServer]:
    require("docker-registry")
    server = RegistryServer(tmp_path / "registry").start()
    yield server
    server.stop()


def test_predict_a_registry_reference_pulls_it_first(tmp_path, runc_env, built, registry):
    ref = f"{registry.host}/tests/filetest:v1"
    pushed = cogbuild(["push", ref], built.model, runc_env)
    assert pushed.code == 0, pushed.err
    fresh = {**runc_env, "COGBUILD_STORE": str(tmp_path / "fresh-store")}  # nothing local: must pull
    (tmp_path / "in.txt").write_text("from the registry")
    run = cogbuild(["predict", ref, "--runtime", "runc", "-i", "image=@in.txt"], tmp_path, fresh)
    assert run.code == 0, run.err
    assert f"pulling {ref}" in run.err
    assert (tmp_path / "output.txt").read_text() == "copied:from the registry"


def test_push_sign_key_signs_and_attests_and_verify_accepts_it(tmp_path, built, registry):
    secret = {"COGBUILD_SIGN_PASSWORD": "pass phrase", "COSIGN_PASSWORD": "ignored: ours comes first"}
    keys = cogbuild(["keygen", str(tmp_path / "release")], tmp_path, {**built.env, **secret})
    assert keys.code == 0, keys.err
    ref = f"{registry.host}/tests/signed:v1"
    wrong = cogbuild(["push", ref, "--sign-key", str(tmp_path / "release.key")], built.model,
                     {**built.env, "COGBUILD_SIGN_PASSWORD": "wrong"})
    assert wrong.code == 2
    assert one_line_error(wrong) == f"the passphrase does not open the private key {tmp_path / 'release.key'}"
    assert "pushing" not in wrong.err, "a key that cannot sign is refused before anything is pushed"
    pushed = cogbuild(["push", ref], built.model,
                      {**built.env, **secret, "COGBUILD_SIGN_KEY": str(tmp_path / "release.key")})
    assert pushed.code == 0, pushed.err
    verified = cogbuild(["verify", ref, "--key", str(tmp_path / "release.pub")], tmp_path, built.env)
    assert verified.code == 0, verified.err
    assert verified.out.startswith(pushed.out.strip() + ": signed by")
    assert verified.out.strip().endswith("attestations: https://slsa.dev/provenance/v1")
    digest = pushed.out.strip().rsplit("@", 1)[1]
    assert len(find_referrers(ref, digest, artifact_type=SIGNATURE_ARTIFACT_TYPE)) == 1  # and as a referrer
    both = cogbuild(["verify", ref, "--key", str(tmp_path / "release.pub"), "--rebuild", str(built.model)],
                    tmp_path, built.env)
    assert both.code == 0, both.err
    assert both.out.strip().splitlines()[-1].endswith("with the attached lock, the same digest")
    shown = cogbuild(["show", ref], tmp_path, built.env)
    assert "signatures: 1" in shown.out and "attestations: https://slsa.dev/provenance/v1" in shown.out
    other = cogbuild(["verify", ref.replace(":v1", ":other"), "--key", str(tmp_path / "release.pub")],
                     tmp_path, built.env)
    assert other.code == 1 and "not found" in one_line_error(other)


def test_verify_rebuild_matches_a_clean_rebuild_and_names_the_changed_code_layer(tmp_path, built, registry):
    ref = f"{registry.host}/tests/rebuilt:v1"
    pushed = cogbuild(["push", ref], built.model, built.env)
    assert pushed.code == 0, pushed.err
    lock_before = (built.model / "cog.lock").read_bytes()
    same = cogbuild(["verify", ref, "--rebuild", str(built.model)], tmp_path, built.env)
    assert same.code == 0, same.err
    assert same.out.strip() == f"{pushed.out.strip()}: rebuilt from {built.model} with the attached lock, " \
                               "the same digest; its signatures were not checked (give --key PUB for that)"
    assert (built.model / "cog.lock").read_bytes() == lock_before
    changed = copy_model("filecopy", tmp_path / "filecopy")
    (changed / "predict.py").write_text((changed / "predict.py").read_text() + "\n# changed\n")
    differs = cogbuild(["verify", ref, "--rebuild", str(changed)], tmp_path, built.env)
    assert differs.code == 1
    assert "layer" in one_line_error(differs) and "(model code (/src)) differs: the image has sha256:" \
        in one_line_error(differs)
    assert not (changed / "cog.lock").exists(), "the rebuild used a copy with the image's lock"


def test_verify_rebuild_compresses_like_the_image_an_image_gzipd_by_zlib_too(tmp_path, built, registry):
    # Images from before libdeflate record zlib as their compressor; a rebuild must use it again to match.
    ref = f"{registry.host}/tests/zlib:v1"
    pushed = cogbuild(["push", ref, "--compression", "gzip-zlib"], built.model, built.env)
    assert pushed.code == 0, pushed.err
    default = cogbuild(["push", ref.replace(":v1", ":libdeflate")], built.model, built.env)
    assert default.code == 0, default.err
    assert default.out.rsplit("@", 1)[1] != pushed.out.rsplit("@", 1)[1], "the engines give different digests"
    same = cogbuild(["verify", ref, "--rebuild", str(built.model)], tmp_path, built.env)
    assert same.code == 0, same.err
    assert "the same digest" in same.out


def test_bad_input_to_an_image_is_one_sentence(cache_root, tmp_path, runc_env, built, bundles):
    missing = cogbuild(["predict", IMAGE, "--runtime", "runc", "-i", "image=@absent.png"], tmp_path, runc_env)
    assert missing.code == 2
    assert one_line_error(missing) == "input 'image' names absent.png, which is not a file"
    assert "starting" not in missing.err, "a missing file must be noticed before a container starts"
    (tmp_path / "in.txt").write_text("x")
    unknown = cogbuild(["predict", IMAGE, "--runtime", "runc", "-i", "image=@in.txt", "-i", "colour=red"],
                       tmp_path, runc_env)
    assert unknown.code == 2
    assert one_line_error(unknown) == 'unknown input "colour"; valid inputs are: image, upper'
    wrong = cogbuild(["predict", IMAGE, "--runtime", "runc", "-i", "image=@in.txt", "-i", "upper=perhaps"],
                     tmp_path, runc_env)
    assert wrong.code == 2
    assert one_line_error(wrong) == "invalid input \"upper\": expected boolean, got string 'perhaps'"
    assert bundles.made() == []
    if find_image(IMAGE, Layout(runc_env["COGBUILD_STORE"]), gpu=False, cache_root=cache_root).schema is not None:
        assert "starting" not in unknown.err, "with the schema label, inputs are checked before a container starts"


@pytest.fixture(scope="session")
def waiting_image(built) -> str:
    """A second image: its prediction logs a line, then waits (60 s at most) for a file that never comes."""
    model = copy_model("waiting", built.root / "waiting")
    run = cogbuild(["build", "-t", "waiting:e2e"], model, built.env)
    assert run.code == 0, f"building the waiting model failed:\n{run.err}"
    return "waiting:e2e"


def predict_waiting(image: str, runtime: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`cogbuild predict` of the waiting model, its release file never made: it runs until stopped."""
    return subprocess.Popen([sys.executable, "-m", "cogbuild", "predict", image, "--runtime", runtime,
                             "-i", f"release={cwd / 'never'}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_model_log(proc: subprocess.Popen) -> None:
    """Read stderr until the model's log line: its prediction is then running."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "waiting for the release file" in line:
            return
    pytest.fail(f"the prediction never logged its line:\n{''.join(seen)}")


def stop(proc: subprocess.Popen, signals: list[str]) -> str:
    """Send the signals one after the other (a user pressing Ctrl-C twice); return stderr once it exits."""
    try:
        for name in signals:
            proc.send_signal(getattr(signal, name))
        return proc.communicate(timeout=60)[1]
    finally:
        proc.kill()


def assert_stopped_by_the_user(proc: subprocess.Popen, err: str) -> None:
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err


def runc_knows(container_id: str) -> bool:
    return container_id in subprocess.run(["runc", "list", "-q"], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize("signals", [["SIGINT"], ["SIGTERM"], ["SIGINT", "SIGINT"]], ids="-".join)
def test_ctrl_c_during_a_prediction_removes_the_container(tmp_path, runc_env, bundles, waiting_image, signals):
    proc = predict_waiting(waiting_image, "runc", tmp_path, runc_env)
    wait_for_model_log(proc)
    running = bundles.made()
    assert len(running) == 1, "the running container has a bundle, named by its container id"
    err = stop(proc, signals)
    assert_stopped_by_the_user(proc, err)
    assert bundles.made() == []
    assert not runc_knows(running[0]), "runc must no longer know the container"


def test_ctrl_c_while_the_container_starts_removes_it(tmp_path, runc_env, bundles, waiting_image):
    """Stopped as soon as its bundle exists: unpacking, starting or waiting for READY, whichever it is in."""
    proc = predict_waiting(waiting_image, "runc", tmp_path, runc_env)
    try:
        while not bundles.made() and proc.poll() is None:
            threading.Event().wait(0.05)
        made = bundles.made()
    finally:
        err = stop(proc, ["SIGINT"])
    assert made, f"the prediction ended before its container was made:\n{err}"
    assert_stopped_by_the_user(proc, err)
    assert bundles.made() == []
    assert not runc_knows(made[0])


def podman_containers(env: dict[str, str]) -> set[str]:
    """The names of podman's containers made by cogbuild (named cogbuild-<id>), running or not."""
    listed = subprocess.run(["podman", "ps", "-a", "--filter", "name=^cogbuild-", "--format", "{{.Names}}"],
                            capture_output=True, text=True, env=env)
    return set(listed.stdout.split())


def test_ctrl_c_during_a_prediction_in_podman_removes_the_container(tmp_path, podman_env, waiting_image):
    others = podman_containers(podman_env)  # left by other tests (or still running elsewhere): not judged here
    proc = predict_waiting(waiting_image, "podman", tmp_path, podman_env)
    wait_for_model_log(proc)
    running = podman_containers(podman_env) - others
    err = stop(proc, ["SIGINT"])
    assert_stopped_by_the_user(proc, err)
    assert running, "the prediction runs in a container named by cogbuild"
    assert not running & podman_containers(podman_env), "podman must no longer have the container"


@pytest.mark.parametrize("runtime", ["runc", "podman"])
def test_run_serves_until_sigterm_and_cleans_up(tmp_path, built, bundles, runtime):
    require(*(["umoci", "runc"] if runtime == "runc" else ["podman", "runc"]))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cogbuild", "run", IMAGE, "--runtime", runtime, "-p", str(port)],
                            cwd=tmp_path, env=built.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    container_spoke = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            err_lines.append(line)
            if not line.startswith("•"):
                container_spoke.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        url = proc.stdout.readline().strip()  # printed once the model is READY
        assert url == f"http://127.0.0.1:{port}", "".join(err_lines)
        payload = {"input": {"image": "data:text/plain;base64," + base64.b64encode(b"served").decode()}}
        body = httpx.post(f"{url}/predictions", json=payload, timeout=60).json()
        assert body["status"] == "succeeded", body
        assert base64.b64decode(body["output"].split(",", 1)[1]) == b"copied:served"
        assert container_spoke.wait(30), f"the container's output must follow on stderr: {err_lines}"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        reader.join(10)
    assert code == 0, "".join(err_lines)
    assert bundles.made() == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health-check", timeout=2)


def test_run_passes_env_and_reports_a_failed_setup_in_one_sentence(tmp_path, runc_env, bundles):
    run = cogbuild(["run", IMAGE, "--runtime", "runc", "-p", str(_free_port()), "-e", "COG_PREDICTOR=nope.py:Predictor"],
                   tmp_path, runc_env)
    assert run.code == 1
    error = one_line_error(run)
    assert error.startswith("the model's setup failed:") and "nope.py" in error
    assert bundles.made() == []


def test_run_refuses_a_port_in_use(tmp_path, runc_env):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = cogbuild(["run", IMAGE, "--runtime", "runc", "-p", str(port)], tmp_path, runc_env)
    assert run.code == 2
    assert one_line_error(run) == f"port {port} is already in use; choose another with -p PORT"


def test_init_build_predict_on_a_fresh_directory(tmp_path, built):
    require("podman", "runc")
    env = built.env  # shares the session's download cache
    assert cogbuild(["init", "fresh"], tmp_path, env).code == 0
    build = cogbuild(["build", "-t", "fresh:e2e"], tmp_path / "fresh", env)
    assert build.code == 0, build.err
    run = cogbuild(["predict", "fresh:e2e", "-i", "text=you", "-i", "repeat=2"], tmp_path, env)
    assert run.code == 0, run.err
    assert run.out == "hello you hello you\n"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rootless_predict_as_an_unprivileged_user(built):
    """umoci --rootless + runc in a user namespace, as `nobody`: the path users without root take."""
    require("umoci", "runc")
    home = Path(tempfile.mkdtemp(prefix="cogbuild-rootless-", dir="/tmp"))
    try:
        shutil.copytree(built.env["COGBUILD_STORE"], home / "store")
        (home / "in.txt").write_text("unprivileged")
        os.chmod(home, 0o755)
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)
        env = {**built.env, "HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run"),
               "COGBUILD_STORE": str(home / "store"), "COGBUILD_CACHE": str(home / "cache")}
        done = unprivileged_cogbuild(["predict", IMAGE, "--runtime", "runc", "-i", "image=@in.txt"], home, env,
                                     timeout=300)
        assert done.returncode == 0, done.stderr
        assert (home / "output.txt").read_text() == "copied:unprivileged"
        assert list((home / "cache" / "bundles").iterdir()) == []
    finally:
        shutil.rmtree(home, ignore_errors=True)
