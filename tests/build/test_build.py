"""cogbuild.build offline: a lock whose artifacts a loopback server holds, built into a real OCI layout."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from cogbuild import build as build_module
from cogbuild.artifacts import Artifact
from cogbuild.build import BuildOptions, build
from cogbuild.cache import BlobCache
from cogbuild.config import load_config
from cogbuild.errors import CogbuildError
from cogbuild.images import find_image
from cogbuild.layers.tree import SpillDir
from cogbuild.lock import Lock, LockedArtifact, dumps, loads
from cogbuild.registry.layout import Layout
from fixtures_build import make_deb, make_wheel
from fixtures_models import write_model
from static_server import StaticServer
from cli_helpers import configured_cache_root


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COGBUILD_STORE", str(tmp_path / "store"))


def artifact(server: StaticServer, kind: str, name: str, filename: str, data: bytes) -> Artifact:
    server.files[f"/{filename}"] = data
    return Artifact(kind, name, "1.0", filename, f"{server.url}/{filename}", hashlib.sha256(data).hexdigest(),
                    len(data), ("request",))


@pytest.fixture
def model(tmp_path) -> Path:
    return write_model(tmp_path / "model", PREDICTOR, "environment:\n  - GREETING=hi\n")


PREDICTOR = "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n        return ''\n"


@pytest.fixture
def served_lock(tmp_path):
    with StaticServer() as server:
        python = make_deb(tmp_path, "python3.11", files={"/usr/bin/python3.11": b"ELF-python"})
        certs = make_deb(tmp_path, "ca-certificates", arch="all",
                         files={"/usr/share/ca-certificates/mozilla/Test.crt": b"-----CERT-----\n"})
        name, wheel = make_wheel("tinydep", files={"tinydep/__init__.py": b"VALUE = 1\n"})
        lock = Lock(inputs="sha256:" + "0" * 64, python_version="3.11", debian_suite="bookworm",
                    platforms=["linux/amd64"], variants=["cpu"])
        lock.packages = [
            LockedArtifact("linux/amd64", "os", artifact(server, "deb", "python3.11", "python3.11.deb", python), ("cpu",)),
            LockedArtifact("linux/amd64", "os", artifact(server, "deb", "ca-certificates", "ca.deb", certs), ("cpu",)),
            LockedArtifact("linux/amd64", "runtime", artifact(server, "wheel", "tinydep", name, wheel), ("cpu",)),
        ]
        yield server, lock


def run_build(model: Path, lock: Lock, store: Path):
    # The fixture "interpreter" is no real Python, so nothing can be byte-compiled with it.
    return build(load_config(model / "cog.yaml"), lock, "sha256:" + "1" * 64, Layout(store),
                 BuildOptions(bytecode=False, cache_root=configured_cache_root()))


def test_build_writes_a_runnable_image_description(model, served_lock, tmp_path):
    server, lock = served_lock
    store = tmp_path / "store"
    result = run_build(model, lock, store)
    layout = Layout(store)
    manifest = layout.read_json(result.descriptor.digest)
    config = layout.read_json(manifest["config"]["digest"])
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["created"] == "1970-01-01T00:00:00Z"
    run = config["config"]
    # The server runs in its own venv; the worker that imports the model on the image's Python.
    assert run["Entrypoint"] == ["/opt/cogbuild/server/bin/python3.11", "-I", "-u", "-m", "cog.server.http"]
    assert run["User"] == "1000:1000" and run["WorkingDir"] == "/src"
    assert run["ExposedPorts"] == {"5000/tcp": {}}
    env = dict(item.split("=", 1) for item in run["Env"])
    assert env["PYTHONUNBUFFERED"] == "1" and env["COG_PREDICTOR"] == "predict.py:Predictor"
    assert env["COG_WORKER_PYTHON"] == "/usr/bin/python3.11" and "PYTHONPATH" not in env
    assert env["GREETING"] == "hi" and env["PATH"].startswith("/usr/local/bin")
    assert json.loads(run["Labels"]["run.cog.config"])["predict"] == "predict.py:Predictor"
    assert [h["created_by"] for h in config["history"]] == [
        "cogbuild: OS and Python runtime (Debian packages)",
        "cogbuild: cogbuild runtime (cog SDK and HTTP server)",
        "cogbuild: model code (/src)"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 3
    for layer in manifest["layers"]:
        assert layout.read_blob(layer["digest"])  # verified by hash on read


def test_every_config_label_fits_containerd_and_the_schema_is_a_manifest_annotation(model, served_lock, tmp_path):
    (model / "predict.py").write_text("from cog import BasePredictor, Input\n\n\nclass Predictor(BasePredictor):\n"
                                      "    def predict(self, text: str = Input(description='Who')) -> str:\n"
                                      "        return text\n")
    server, lock = served_lock
    result = run_build(model, lock, tmp_path / "store")
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(result.descriptor.digest)
    labels = layout.read_json(manifest["config"]["digest"])["config"]["Labels"]
    # `ctr run` refuses an image label whose key and value exceed 4096 bytes; even a one-input schema does.
    assert all(len(key.encode()) + len(value.encode()) <= 4096 for key, value in labels.items())
    assert "run.cog.config" in labels and "run.cog.openapi_schema" not in labels
    schema = json.loads(manifest["annotations"]["run.cog.openapi_schema"])
    assert list(schema["components"]["schemas"]["Input"]["properties"]) == ["text"]
    layout.tag("schema:test", result.descriptor)
    assert find_image("schema:test", layout, gpu=False, cache_root=configured_cache_root()).schema == schema


def layer_files(layout: Layout, manifest: dict, index: int) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layout.read_blob(manifest["layers"][index]["digest"]))) as tar:
        return {member.name: member for member in tar.getmembers()}


def test_the_server_and_its_dependencies_live_apart_from_the_models_site_packages(model, served_lock, tmp_path):
    server, lock = served_lock
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(run_build(model, lock, tmp_path / "store").descriptor.digest)
    runtime = layer_files(layout, manifest, 1)
    venv, site = "opt/cogbuild/server", "usr/local/lib/python3.11/dist-packages"
    assert f"{venv}/lib/python3.11/site-packages/tinydep/__init__.py" in runtime
    assert f"{venv}/lib/python3.11/site-packages/cog/server/http.py" in runtime
    assert runtime[f"{venv}/bin/python3.11"].linkname == "/usr/bin/python3.11"
    assert not any(name.startswith(f"{site}/tinydep") for name in runtime), "runtime deps stay out of the model's"
    assert f"{site}/cog/__init__.py" in runtime, "the worker imports the cog SDK from the model's site-packages"
    with tarfile.open(fileobj=io.BytesIO(layout.read_blob(manifest["layers"][1]["digest"]))) as tar:
        config = tar.extractfile(f"{venv}/pyvenv.cfg").read().decode()
    assert config == "home = /usr/bin\ninclude-system-site-packages = false\n"


def test_rebuild_is_identical_and_an_edit_recomposes_only_the_code_layer(model, served_lock, tmp_path,
                                                                         monkeypatch):
    server, lock = served_lock
    store = tmp_path / "store"
    first = run_build(model, lock, store)
    composed = []
    real_write = build_module.write_layer
    monkeypatch.setattr(build_module, "write_layer",
                        lambda tree, *a, **k: composed.append(tree) or real_write(tree, *a, **k))
    assert run_build(model, lock, store).descriptor == first.descriptor
    assert composed == []
    (model / "predict.py").write_text(PREDICTOR + "# edited\n")
    edited = run_build(model, lock, store)
    assert len(composed) == 1
    layout = Layout(store)
    before = [layer["digest"] for layer in layout.read_json(first.descriptor.digest)["layers"]]
    after = [layer["digest"] for layer in layout.read_json(edited.descriptor.digest)["layers"]]
    assert before[:2] == after[:2] and before[2] != after[2]


def test_unpacked_deb_files_wait_on_disk_until_written_and_are_removed_after_the_build(model, served_lock, tmp_path,
                                                                                      monkeypatch):
    server, lock = served_lock
    big = random.Random(15).randbytes(SpillDir.SMALL * 8)
    deb = make_deb(tmp_path, "libbig", files={"/usr/lib/x86_64-linux-gnu/libbig.so.1": big})
    lock.packages.append(LockedArtifact("linux/amd64", "os", artifact(server, "deb", "libbig", "libbig.deb", deb),
                                        ("cpu",)))
    written = []
    real_write = build_module.write_layer
    monkeypatch.setattr(build_module, "write_layer",
                        lambda tree, *a, **k: written.append(tree.get("usr/lib/x86_64-linux-gnu/libbig.so.1"))
                        or real_write(tree, *a, **k))
    built = run_build(model, lock, tmp_path / "store")
    [entry] = [e for e in written if e is not None]
    assert entry.data is None and entry.source is not None  # a path while the layer waited, not the bytes
    assert not entry.source.exists() and list((tmp_path / "cache" / "tmp").iterdir()) == []
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(built.descriptor.digest)
    with tarfile.open(fileobj=io.BytesIO(layout.read_blob(manifest["layers"][0]["digest"]))) as tar:
        assert tar.extractfile("usr/lib/x86_64-linux-gnu/libbig.so.1").read() == big


def test_a_corrupt_download_cache_entry_is_detected_and_fetched_again(model, served_lock, tmp_path):
    server, lock = served_lock
    first = run_build(model, lock, tmp_path / "store-a")
    wheel = next(p.artifact for p in lock.packages if p.artifact.kind == "wheel")
    cached = BlobCache(configured_cache_root()).path(wheel.sha256)
    cached.write_bytes(b"bit rot")
    hits_before = server.hits[f"/{wheel.filename}"]
    second = run_build(model, lock, tmp_path / "store-b")
    assert server.hits[f"/{wheel.filename}"] == hits_before + 1
    assert second.descriptor == first.descriptor


def test_a_download_that_does_not_match_the_lock_is_a_hard_error(model, served_lock, tmp_path):
    server, lock = served_lock
    wheel = next(p.artifact for p in lock.packages if p.artifact.kind == "wheel")
    server.files[f"/{wheel.filename}"] = b"tampered"
    with pytest.raises(CogbuildError, match=f"{wheel.filename}.*expected sha256 {wheel.sha256}"):
        run_build(model, lock, tmp_path / "store")


def test_a_corrupt_layer_in_the_store_is_recomposed(model, served_lock, tmp_path):
    server, lock = served_lock
    store = tmp_path / "store"
    first = run_build(model, lock, store)
    layout = Layout(store)
    code_layer = layout.read_json(first.descriptor.digest)["layers"][-1]["digest"]
    layout.blob_path(code_layer).write_bytes(b"corrupt")
    again = run_build(model, lock, store)
    assert again.descriptor == first.descriptor
    assert layout.read_blob(code_layer)


def test_lock_round_trips_and_names_the_bad_line(served_lock):
    _, lock = served_lock
    text = dumps(lock)
    assert dumps(loads(text)) == text
    broken = text.replace('sha256 = "', 'sha256 = "zz', 1)
    with pytest.raises(CogbuildError, match=r"cog.lock line \d+: sha256 of"):
        loads(broken)
    with pytest.raises(CogbuildError, match="not valid TOML"):
        loads(text + "\n[[package\n")


def test_gpu_variant_adds_cuda_layer_and_nvidia_environment(model, served_lock, tmp_path):
    server, lock = served_lock
    name, wheel = make_wheel("nvidia_cublas_cu12", files={
        "nvidia/__init__.py": b"", "nvidia/cublas/lib/libcublas.so.12": b"ELF", "nvidia/cublas/include/x.h": b""})
    cublas = artifact(server, "wheel", "nvidia-cublas-cu12", name, wheel)
    lock.variants = ["cpu", "gpu"]
    lock.packages = [LockedArtifact(p.platform, p.group, p.artifact, ("cpu", "gpu")) for p in lock.packages]
    lock.packages.append(LockedArtifact("linux/amd64", "cuda", cublas, ("gpu",)))
    result = run_build(model, lock, tmp_path / "store")
    layout = Layout(tmp_path / "store")
    assert set(result.variants) == {"cpu", "gpu"}
    index = layout.read_json(result.descriptor.digest)
    assert sorted(m["annotations"]["run.cog.variant"] for m in index["manifests"]) == ["cpu", "gpu"]

    def config_of(variant: str) -> dict:
        manifest = layout.read_json(result.images[("linux/amd64", variant)].digest)
        return layout.read_json(manifest["config"]["digest"])

    gpu, cpu = config_of("gpu"), config_of("cpu")
    gpu_env = dict(item.split("=", 1) for item in gpu["config"]["Env"])
    assert gpu_env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert gpu_env["LD_LIBRARY_PATH"] == "/usr/local/lib/python3.11/dist-packages/nvidia/cublas/lib"
    assert not any(item.startswith(("NVIDIA_", "LD_LIBRARY_PATH")) for item in cpu["config"]["Env"])
    assert len(gpu["rootfs"]["diff_ids"]) == len(cpu["rootfs"]["diff_ids"]) + 1
    assert gpu["rootfs"]["diff_ids"][0] == cpu["rootfs"]["diff_ids"][0], "the OS layer is shared"


def cpython_tarball(version: str = "3.12") -> bytes:
    """A CPython-shaped install_only tarball (no real interpreter: nothing here runs it)."""
    import io as _io
    import tarfile as _tarfile

    buf = _io.BytesIO()
    with _tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in ((f"python/bin/python{version}", b"ELF"), (f"python/lib/python{version}/os.py", b"")):
            info = _tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, _io.BytesIO(data))
    return buf.getvalue()


def test_standalone_python_tarball_becomes_the_interpreter(tmp_path, served_lock):
    import io as _io
    import tarfile as _tarfile

    server, lock = served_lock
    tarball = artifact(server, "python-tarball", "cpython", "cpython-3.12.7.tar.gz", cpython_tarball())
    lock.python_version = "3.12"
    lock.packages = [p for p in lock.packages if p.artifact.name != "python3.11"]
    lock.packages.append(LockedArtifact("linux/amd64", "interpreter", tarball, ("cpu",)))
    model = tmp_path / "m312"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.12"\npredict: "predict.py:Predictor"\n')
    (model / "predict.py").write_text(PREDICTOR)
    result = run_build(model, lock, tmp_path / "store")
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(result.descriptor.digest)
    config = layout.read_json(manifest["config"]["digest"])["config"]
    assert config["Entrypoint"][0] == "/opt/cogbuild/server/bin/python3.12"
    assert dict(e.split("=", 1) for e in config["Env"])["COG_WORKER_PYTHON"] == "/usr/bin/python3.12"
    assert dict(e.split("=", 1) for e in config["Env"])["PATH"].startswith("/opt/python/bin:")
    import gzip as _gzip

    def names(layer: int) -> list[str]:
        blob = layout.read_blob(manifest["layers"][layer]["digest"])
        return _tarfile.open(fileobj=_io.BytesIO(_gzip.decompress(blob))).getnames()

    # The OS layer holds Debian's packages only; the interpreter has a layer of its own above it.
    assert "etc/passwd" in names(0) and not any(n.startswith("opt/python") for n in names(0))
    assert "opt/python/bin/python3.12" in names(1) and "usr/bin/python3.12" in names(1)
    assert "opt/cogbuild/server/lib/python3.12/site-packages/tinydep/__init__.py" in names(2)
    assert "opt/python/lib/python3.12/site-packages/cog/__init__.py" in names(2)


def weighted_model(root: Path, name: str, weights: dict[str, bytes]) -> Path:
    model = root / name
    (model / "w" / "sub").mkdir(parents=True)
    (model / "cog.yaml").write_text(f'build:\n  python_version: "3.11"\nrun: "predict.py:Predictor"\nimage: {name}\n'
                                    "weights:\n  - name: base\n    target: /weights/base\n"
                                    "    source:\n      uri: ./w\n      exclude: ['*.tmp']\n")
    (model / "predict.py").write_text(PREDICTOR + f"# {name}\n")
    for rel, data in weights.items():
        (model / "w" / rel).write_bytes(data)
    return model


def layer_contents(layout: Layout, manifest: dict, index: int) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(layout.read_blob(manifest["layers"][index]["digest"]))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_weights_entries_are_layers_of_their_own_shared_by_models_with_the_same_files(served_lock, tmp_path):
    server, lock = served_lock
    files = {"model.safetensors": b"W" * 1000, "sub/config.json": b"{}", "scratch.tmp": b"left out"}
    store = tmp_path / "store"
    a = run_build(weighted_model(tmp_path, "a", files), lock, store)
    b = run_build(weighted_model(tmp_path, "b", files), lock, store)
    layout = Layout(store)
    layers_a, layers_b = ([layer["digest"] for layer in layout.read_json(r.descriptor.digest)["layers"]] for r in (a, b))
    assert layers_a[-1] == layers_b[-1], "the same weights give the same layer in both models"
    assert layers_a[-2] != layers_b[-2], "the code differs"
    manifest = layout.read_json(a.descriptor.digest)
    assert layer_contents(layout, manifest, -1) == {"weights/base/model.safetensors": b"W" * 1000,
                                                    "weights/base/sub/config.json": b"{}"}
    code = layer_contents(layout, manifest, -2)
    assert "src/predict.py" in code and not any(name.startswith("src/w/") for name in code)
    config = layout.read_json(layout.read_json(a.descriptor.digest)["config"]["digest"])
    assert config["history"][-1]["created_by"] == "cogbuild: weights base (/weights/base)"


def test_a_weights_source_that_cannot_be_imported_is_one_sentence(served_lock, tmp_path):
    server, lock = served_lock
    model = weighted_model(tmp_path, "hf", {})
    text = (model / "cog.yaml").read_text().replace("uri: ./w", "uri: hf://acme/model")
    (model / "cog.yaml").write_text(text)
    with pytest.raises(CogbuildError, match=r"weights 'base': source hf://acme/model cannot be imported yet"):
        run_build(model, lock, tmp_path / "store")


def test_cog_yaml_keys_reach_the_image_config(served_lock, tmp_path):
    server, lock = served_lock
    model = tmp_path / "keys"
    model.mkdir()
    (model / "predict.py").write_text(PREDICTOR)
    (model / "train.py").write_text("def train(epochs: int = 1) -> str:\n    return 'done'\n")
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  fast: true\n  sdk_version: "0.16.0"\n'
                                    'run: "predict.py:Predictor"\ntrain: "train.py:train"\n'
                                    "concurrency:\n  max: 2\n  default_target: 1\nenvironment:\n  - HF_HOME=/src/.hf\n")
    result = run_build(model, lock, tmp_path / "store")
    layout = Layout(tmp_path / "store")
    run = layout.read_json(layout.read_json(result.descriptor.digest)["config"]["digest"])["config"]
    env = dict(item.split("=", 1) for item in run["Env"])
    assert (env["COG_TRAIN"], env["COG_MAX_CONCURRENCY"], env["HF_HOME"]) == ("train.py:train", "2", "/src/.hf")
    recorded = json.loads(run["Labels"]["run.cog.config"])
    assert recorded["concurrency"]["default_target"] == 1 and recorded["build"]["fast"] is True


def test_an_arm64_standalone_image_builds_on_amd64_without_running_anything(tmp_path):
    """Cross-architecture: the arm64 interpreter is never executed, so the image carries no bytecode."""
    import gzip as _gzip
    import io as _io
    import tarfile as _tarfile

    with StaticServer() as server:
        libc = make_deb(tmp_path, "libc6", arch="arm64", files={"/usr/lib/aarch64-linux-gnu/libc.so.6": b"ELF"})
        lock = Lock(inputs="sha256:" + "0" * 64, python_version="3.12", debian_suite="trixie",
                    platforms=["linux/arm64"], variants=["cpu"], python_provider="standalone")
        lock.packages = [
            LockedArtifact("linux/arm64", "os", artifact(server, "deb", "libc6", "libc6.deb", libc), ("cpu",)),
            LockedArtifact("linux/arm64", "interpreter",
                           artifact(server, "python-tarball", "cpython", "cpython-arm64.tar.gz", cpython_tarball()),
                           ("cpu",)),
        ]
        model = tmp_path / "m"
        model.mkdir()
        (model / "cog.yaml").write_text('build:\n  python_version: "3.12"\nrun: "predict.py:Predictor"\n')
        (model / "predict.py").write_text(PREDICTOR)
        result = build(load_config(model / "cog.yaml"), lock, "sha256:" + "1" * 64, Layout(tmp_path / "store"),
                       BuildOptions(bytecode=True, platforms=["linux/arm64"], cache_root=configured_cache_root()))
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(result.descriptor.digest)
    assert manifest["annotations"]["run.cog.bytecode"] == "none"
    assert layout.read_json(manifest["config"]["digest"])["architecture"] == "arm64"
    interpreter = _tarfile.open(fileobj=_io.BytesIO(_gzip.decompress(layout.read_blob(manifest["layers"][1]["digest"]))))
    names = interpreter.getnames()
    assert "opt/python/bin/python3.12" in names and not any(n.endswith(".pyc") for n in names)


def test_an_app_image_runs_its_entrypoint_with_its_wheels_and_no_cog_runtime(served_lock, tmp_path):
    """`entrypoint:` (cogbuild's own image, image/cog.yaml): the app's wheel with a console script, no Cog
    server, schema, model environment or /src; the lock's runtime wheels are never installed."""
    server, lock = served_lock
    name, wheel = make_wheel("tinyapp", files={"tinyapp/__init__.py": b"def main(): pass\n"},
                             console_scripts={"tinyapp": "tinyapp:main"})
    lock.packages.append(LockedArtifact("linux/amd64", "python", artifact(server, "wheel", "tinyapp", name, wheel),
                                        ("cpu",)))
    app = tmp_path / "app"
    app.mkdir()
    (app / "cog.yaml").write_text('build:\n  python_version: "3.11"\nentrypoint: ["tinyapp", "--flag"]\n'
                                  'environment:\n  - GREETING=hi\n')
    (app / "stray.txt").write_text("not part of the image\n")
    layout = Layout(tmp_path / "store")
    manifest = layout.read_json(run_build(app, lock, tmp_path / "store").descriptor.digest)
    config = layout.read_json(manifest["config"]["digest"])
    run = config["config"]
    assert run["Entrypoint"] == ["tinyapp", "--flag"]
    assert run["User"] == "1000:1000" and run["WorkingDir"] == "/home/cog" and run["ExposedPorts"] == {}
    env = dict(item.split("=", 1) for item in run["Env"])
    assert env["GREETING"] == "hi" and not [k for k in env if k.startswith("COG_")]
    assert "run.cog.openapi_schema" not in run["Labels"] and "run.cog.openapi_schema" not in manifest.get(
        "annotations", {})
    assert [h["created_by"] for h in config["history"]] == [
        "cogbuild: OS and Python runtime (Debian packages)", "cogbuild: Python packages"]
    files = layer_files(layout, manifest, 1)
    assert "usr/local/bin/tinyapp" in files and "usr/local/lib/python3.11/dist-packages/tinyapp/__init__.py" in files
    assert not any("tinydep" in path or "/cog/" in path for path in files)
