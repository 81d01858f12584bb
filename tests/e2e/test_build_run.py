"""build.run with real parts: steps run in runc over the image, their layers are pinned in cog.lock, and the
image serves from podman with the steps' effects in place."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import httpx
import pytest

from components import require, unavailable
from fixtures_build import make_wheel
from static_server import StaticServer
from unprivileged import NOBODY, unprivileged_cogbuild
from test_walking_skeleton import podman, serving  # noqa: F401  (podman is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.network]
COGBUILD = [sys.executable, "-m", "cogbuild"]
SECRET = "tok-3f9a1c77e2b4-never-in-a-layer"
PREDICT = '''\
import hashlib, json, os
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        import runhelper

        return json.dumps({
            "written": open("/opt/step/file").read(),
            "shell": open("/etc/step-note").read().strip(),
            "deleted_still_there": os.path.exists("/etc/debian_version"),
            "wheel": runhelper.VALUE,
            "secret_sha": open("/opt/secret-sha").read().strip(),
        })
'''


def run_cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(COGBUILD + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = run_cogbuild(args, cwd, env)
    assert done.returncode == 0, f"cogbuild {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """Downloads and Debian indexes shared by this module's builds; layers and stores are per build."""
    require("runc")
    if os.geteuid() != 0:
        unavailable("build.run steps need root")
    return tmp_path_factory.mktemp("downloads")


def clean_env(root: Path, downloads: Path) -> dict[str, str]:
    """A cache with no layers (so every step runs) and an empty store; downloads are shared."""
    cache = root / "cache"
    cache.mkdir(parents=True)
    for shared in ("blobs", "debian-indexes"):
        (downloads / shared).mkdir(exist_ok=True)
        (cache / shared).symlink_to(downloads / shared)
    return {**os.environ, "COGBUILD_CACHE": str(cache), "COGBUILD_STORE": str(root / "store")}


@pytest.fixture(scope="module")
def wheel_server():
    name, data = make_wheel("runhelper", "1.0", files={"runhelper/__init__.py": b'VALUE = "from-wheel"\n'})
    with StaticServer() as server:
        server.files[f"/{name}"] = data
        yield f"{server.url}/{name}"


def write_model(model: Path, steps: list, predict: str = PREDICT, packages: tuple[str, ...] = ()) -> Path:
    model.mkdir(parents=True)
    build = {"python_version": "3.11", "run": steps, **({"python_packages": list(packages)} if packages else {})}
    (model / "cog.yaml").write_text(json.dumps({"build": build, "predict": "predict.py:Predictor"}, indent=1))
    (model / "predict.py").write_text(predict)
    return model


def effects_model(model: Path, wheel_url: str) -> Path:
    return write_model(model, [
        "python3 -c \"import pathlib; d = pathlib.Path('/opt/step'); d.mkdir(parents=True); "
        "(d / 'file').write_text('from-step')\" && echo shell-was-here > /etc/step-note",
        "python3 -c \"import os; os.remove('/etc/debian_version')\"",
        f"python3 -m pip install --no-index {wheel_url}",
        {"command": "python3 -c \"import hashlib; print(hashlib.sha256(open('/run/secrets/token', 'rb')"
                    ".read()).hexdigest())\" > /opt/secret-sha",
         "mounts": [{"type": "secret", "id": "token", "target": "/run/secrets/token"}]},
    ], packages=("pip==24.0",))


def layer_tars(store: Path) -> list[bytes]:
    """Every blob in the store, decompressed where it is a gzip layer."""
    out = []
    for blob in (store / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def blob(store: Path, digest: str) -> bytes:
    return (store / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def diff_ids(store: Path, manifest_digest: str) -> list[str]:
    config = json.loads(blob(store, json.loads(blob(store, manifest_digest))["config"]["digest"]))
    return config["rootfs"]["diff_ids"]


def run_layer_names(store: Path, manifest_digest: str) -> list[list[str]]:
    """The member names of each build.run layer of an image, found by their history comments."""
    manifest = json.loads(blob(store, manifest_digest))
    history = json.loads(blob(store, manifest["config"]["digest"]))["history"]
    comments = [h.get("created_by", "") for h in history if not h.get("empty_layer")]
    out = []
    for layer, comment in zip(manifest["layers"], comments, strict=False):
        if "build.run step" in comment:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(store, layer["digest"])))) as tar:
                out.append(tar.getnames())
    return out


def image_digest(output: str) -> str:
    digest = output.splitlines()[-1]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), output
    return digest


def test_steps_become_pinned_layers_that_serve_in_podman(tmp_path, downloads, wheel_server, podman):
    model = effects_model(tmp_path / "model", wheel_server)
    secret = tmp_path / "token.txt"
    secret.write_text(SECRET)
    env = clean_env(tmp_path / "first", downloads)

    digest = image_digest(cogbuild(["build", "-t", "runsteps:e2e", "--secret", f"id=token,src={secret}"], model,
                                   env))
    lock = (model / "cog.lock").read_text()
    assert len(re.findall(r'^diff-id = "sha256:[0-9a-f]{64}"$', lock, re.M)) == 4, lock
    cogbuild(["lock", "--check"], model, env)

    store, cache = tmp_path / "first" / "store", tmp_path / "first" / "cache"
    # Nothing of the sandbox is in the steps' layers: no mount point, no resolv.conf, no secret file.
    names = run_layer_names(store, digest)
    assert len(names) == 4
    for sandbox_path in ("proc", "sys", "dev", "run", "etc/resolv.conf", "etc/hosts", "root/.cache", "tmp"):
        assert not any(n == sandbox_path or n.startswith(sandbox_path + "/") for layer in names for n in layer), \
            (sandbox_path, names)
    assert "etc/.wh.debian_version" in names[1]

    # The secret reached no layer, config, lock or cache entry (it is read from its file only by runc).
    assert all(SECRET.encode() not in tar for tar in layer_tars(store))
    for path in [*cache.rglob("*"), *model.rglob("*")]:
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not list((cache / "sandbox").iterdir()), "the sandbox's root filesystem must be removed"

    # A second clean build runs every step again and gets the same layers, hence the same image.
    again = clean_env(tmp_path / "second", downloads)
    assert image_digest(cogbuild(["build", "--secret", f"id=token,src={secret}"], model, again)) == digest
    # With the layers cached, no step runs, so no secret is needed.
    assert image_digest(cogbuild(["build"], model, again)) == digest

    with serving(podman, f"oci:{store}:runsteps:e2e") as (base, _):
        body = httpx.post(f"{base}/predictions", json={"input": {}}, timeout=60).json()
    assert body["status"] == "succeeded", body
    assert json.loads(body["output"]) == {
        "written": "from-step", "shell": "shell-was-here", "deleted_still_there": False,
        "wheel": "from-wheel", "secret_sha": hashlib.sha256(SECRET.encode()).hexdigest()}


def test_a_changed_output_is_caught_and_update_run_accepts_it(tmp_path, downloads):
    model = write_model(tmp_path / "model", [
        "python3 -c \"import os; open('/etc/random', 'wb').write(os.urandom(16))\""], predict=EMPTY_PREDICT)
    env = clean_env(tmp_path / "first", downloads)
    cogbuild(["lock"], model, env)
    check = run_cogbuild(["lock", "--check"], model, env)
    assert check.returncode == 1 and "records no output digest for build.run step 1" in check.stderr

    cogbuild(["build"], model, env)
    recorded = re.search(r'diff-id = "(sha256:[0-9a-f]{64})"', (model / "cog.lock").read_text()).group(1)
    cogbuild(["lock", "--check"], model, env)

    fresh = clean_env(tmp_path / "second", downloads)
    failed = run_cogbuild(["build"], model, fresh)
    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    produced = re.search(r"produced (sha256:[0-9a-f]{64}), but cog.lock records (sha256:[0-9a-f]{64})", message)
    assert produced and produced.group(2) == recorded and produced.group(1) != recorded, failed.stderr
    assert "build.run step 1" in message and "--update-run" in message
    assert recorded in (model / "cog.lock").read_text(), "a failed check must not touch the lock"

    cogbuild(["build", "--update-run"], model, fresh)
    assert produced.group(1) in (model / "cog.lock").read_text()


EMPTY_PREDICT = "from cog import BasePredictor\n\n\nclass Predictor(BasePredictor):\n" \
                "    def predict(self) -> str:\n        return 'ok'\n"


def test_a_failing_step_stops_the_build_with_its_exit_code_and_output(tmp_path, downloads):
    secret = tmp_path / "s"
    secret.write_text(SECRET)
    model = write_model(tmp_path / "model", [
        "echo step-one-ran > /etc/one",
        {"command": "echo about to fail; echo leaked: $(cat /run/secrets/s); exit 3",
         "mounts": [{"type": "secret", "id": "s", "target": "/run/secrets/s"}]},
    ], predict=EMPTY_PREDICT)
    env = clean_env(tmp_path / "build", downloads)
    failed = run_cogbuild(["build", "--secret", f"id=s,src={secret}"], model, env)
    assert failed.returncode == 1
    assert "error: build.run step 2 (`echo about to fail;" in failed.stderr
    assert "failed with exit code 3" in failed.stderr
    assert "about to fail" in failed.stderr
    assert SECRET not in failed.stderr + failed.stdout
    assert "diff-id" not in (model / "cog.lock").read_text()


def test_a_missing_secret_is_named(tmp_path, downloads):
    model = write_model(tmp_path / "model", [
        {"command": "true", "mounts": [{"type": "secret", "id": "hf", "target": "/run/secrets/hf"}]}],
        predict=EMPTY_PREDICT)
    failed = run_cogbuild(["build"], model, clean_env(tmp_path / "build", downloads))
    assert failed.returncode == 2
    assert "build.run step 1 mounts the secret 'hf'; pass it with --secret id=hf,src=FILE" in failed.stderr


def test_rootless_steps_give_the_layers_root_gives(tmp_path, downloads):
    """As `nobody`, runc runs the steps in a user namespace; the image's owners come back in the diff."""
    model = write_model(tmp_path / "model", [
        "echo note > /home/cog/.note && python3 -c \"import os; os.chmod('/home/cog', 0o700)\"",
        "python3 -c \"import os; os.remove('/etc/debian_version')\"",
    ], predict=EMPTY_PREDICT)
    digest = image_digest(cogbuild(["build"], model, clean_env(tmp_path / "root", downloads)))
    layers = diff_ids(tmp_path / "root" / "store", digest)

    home = Path(tempfile.mkdtemp(prefix="cogbuild-rootless-run-", dir="/tmp"))  # a place nobody can reach
    try:
        os.chmod(home, 0o755)
        shutil.copytree(model, home / "model")
        shutil.copytree(downloads, home / "downloads")
        env = {**clean_env(home / "build", home / "downloads"), "HOME": str(home),
               "XDG_RUNTIME_DIR": str(home / "run")}
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(home)], check=True)
        done = unprivileged_cogbuild(["build"], home / "model", env)
        assert done.returncode == 0, done.stderr  # it ran both steps and checked them against cog.lock
        # The labels may differ (the schema comes from the host's Python); the layers may not.
        assert diff_ids(home / "build" / "store", image_digest(done.stdout.strip())) == layers
    finally:
        shutil.rmtree(home, ignore_errors=True)
