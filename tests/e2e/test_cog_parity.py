"""A Cog project as Cog users write it, end to end: cog.yaml `weights:` shared by two models through a real
docker-registry, `model:` as the push target, bash in the image (podman), and a predictor in a subdirectory
served from its image (umoci + runc)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from components import podman_command
from fixtures_models import write_subdirectory_model
from oci_registry_server import RegistryServer, require

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PREDICTOR = (REPO / "examples" / "hello" / "predict.py").read_text()


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """One store and download cache for the module: the models share their OS and Python layers."""
    root = tmp_path_factory.mktemp("parity")
    return {**os.environ, "COGBUILD_CACHE": str(root / "cache"), "COGBUILD_STORE": str(root / "store")}


@pytest.fixture
def podman() -> list[str]:
    return podman_command()


def cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "cogbuild", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"cogbuild {' '.join(args)} failed:\n{done.stderr}"
    return done


def weighted_model(root: Path, name: str, repository: str, weights: bytes) -> Path:
    model = root / name
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "model.bin").write_bytes(weights)
    (model / "predict.py").write_text(PREDICTOR.replace('"hello"', f'"{name}"'))
    (model / "cog.yaml").write_text(
        f'build:\n  python_version: "3.11"\nrun: "predict.py:Predictor"\nmodel: {repository}\n'
        "weights:\n  - name: base\n    target: /weights/base\n    source:\n      uri: ./weights\n")
    return model


def manifest_layers(host: str, ref: str) -> list[dict]:
    repository, digest = ref.split("/", 1)[1].split("@")
    answer = httpx.get(f"http://{host}/v2/{repository}/manifests/{digest}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert answer.status_code == 200, answer.text
    return answer.json()["layers"]


def test_weights_shared_by_two_models_are_one_blob_in_the_registry(tmp_path, env, podman):
    require("docker-registry")
    registry = RegistryServer(tmp_path / "registry").start()
    try:
        weights = os.urandom(2 * 1024 * 1024)
        pushed = {}
        for name in ("alpha", "beta"):
            model = weighted_model(tmp_path, name, f"{registry.host}/acme/{name}", weights)
            done = cogbuild(["push"], model, env)  # no REF: cog.yaml's `model:` repository, as :latest
            assert done.stdout.startswith(f"{registry.host}/acme/{name}:latest@sha256:"), done.stdout
            pushed[name] = done.stdout.strip().replace(":latest@", "@")
        alpha, beta = (manifest_layers(registry.host, pushed[n]) for n in ("alpha", "beta"))
        assert alpha[-1]["digest"] == beta[-1]["digest"], "the weights layer is the same blob in both"
        assert alpha[-2]["digest"] != beta[-2]["digest"], "the code layers differ"
        blobs = Path(registry.storage) / "docker" / "registry" / "v2" / "blobs" / "sha256"
        stored = [p for p in blobs.rglob("data") if p.parent.name == alpha[-1]["digest"].split(":")[1]]
        assert len(stored) == 1 and stored[0].stat().st_size == alpha[-1]["size"]

        shown = cogbuild(["show", pushed["alpha"]], tmp_path, env).stdout
        assert "weights base (/weights/base)" in shown, shown

        # The weights are at their target, and bash is there for models that call it.
        check = ("import hashlib, os; print(hashlib.sha256(open('/weights/base/model.bin', 'rb').read()).hexdigest());"
                 " print(sorted(os.listdir('/src')))")
        ran = subprocess.run(podman + ["run", "--rm", "--tls-verify=false", "--entrypoint", "/bin/bash",
                                       pushed["beta"], "-c", f'echo "bash $BASH_VERSION"; python3 -c "{check}"'],
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stderr
        shell, digest, listing = ran.stdout.splitlines()
        assert shell.startswith("bash 5.")
        assert digest == hashlib.sha256(weights).hexdigest()
        assert listing == "['cog.lock', 'cog.yaml', 'predict.py']", "the weights source stays out of /src"
    finally:
        registry.stop()


def test_a_predictor_in_a_subdirectory_builds_and_serves_from_its_image(tmp_path, env):
    require("umoci", "runc")
    model = write_subdirectory_model(tmp_path / "subdir", "image: subdir-model\n")
    built = cogbuild(["build"], model, env)
    assert "Image built as subdir-model:latest" in built.stderr
    assert 'deprecated field "predict": use "run" instead' in built.stderr
    done = cogbuild(["predict", "subdir-model:latest", "--runtime", "runc", "-i", "s=world"], tmp_path, env)
    assert done.stdout == "hello world\n"
    rejected = subprocess.run([sys.executable, "-m", "cogbuild", "predict", "subdir-model:latest", "--runtime",
                               "runc", "--json", '{"wrong": 1}'], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
    assert rejected.returncode == 2
    assert 'unknown input "wrong"; valid inputs are: s' in rejected.stderr
    assert "starting" not in rejected.stderr, "the input is checked against the image's schema before it starts"


def test_an_unresolvable_output_type_fails_the_build_in_cogs_words(tmp_path, env):
    model = tmp_path / "unresolvable"
    (model / "mypackage").mkdir(parents=True)
    (model / "mypackage" / "__init__.py").write_text("from cog import BaseModel\n\nclass Output(BaseModel):\n"
                                                     "    text: str\n")
    (model / "predict.py").write_text("from cog import BasePredictor\nfrom mypackage import Output\n\n"
                                      "class Predictor(BasePredictor):\n"
                                      "    def predict(self, prompt: str) -> Output:\n"
                                      "        return Output(text=prompt)\n")
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\nrun: "predict.py:Predictor"\n')
    done = subprocess.run([sys.executable, "-m", "cogbuild", "build"], cwd=model, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 2
    assert 'cannot resolve type "Output" (imported from "mypackage")' in done.stderr
    assert "composing" not in done.stderr, "nothing is built for a schema that cannot be served"
