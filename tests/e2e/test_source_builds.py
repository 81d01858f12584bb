"""Requirements without a wheel, with real parts: an sdist-only project on a loopback index whose
dependencies only its setup.py knows (gputil 1.4.0's case), an sdist and a wheel in the project, and a git
commit served by git daemon on loopback. They lock, their wheels are built in runc by the image's own
Python, pinned in cog.lock, and import in podman."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from fixtures_build import make_wheel
from git_server import GitDaemon, commit_repo
from sdist_fixtures import links_page, setup_py_sdist
from static_server import StaticServer
from test_build_run import clean_env, cogbuild, downloads, image_digest, run_cogbuild  # noqa: F401
from test_walking_skeleton import podman, serving  # noqa: F401  (podman is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.network]
PREDICT = '''\
import json
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        import gitpkg, indexsrc, localsrc, localwhl, srcdep

        return json.dumps([indexsrc.VALUE, localsrc.VALUE, localwhl.VALUE, srcdep.VALUE, gitpkg.VALUE,
                           indexsrc.__file__])
'''


@pytest.fixture(scope="module")
def links():
    """A --find-links page on loopback with an sdist-only project and the wheel its setup.py asks for."""
    sdist_name, sdist = setup_py_sdist("indexsrc", "1.4.0", "VALUE = 'from-index-sdist'\n", ("srcdep",))
    wheel_name, wheel = make_wheel("srcdep", "1.0", files={"srcdep/__init__.py": b"VALUE = 'dep'\n"})
    with StaticServer() as server:
        server.files.update({f"/links/{sdist_name}": sdist, f"/links/{wheel_name}": wheel,
                             "/links/": links_page([sdist_name, wheel_name])})
        server.content_types["/links/"] = "text/html"
        yield f"{server.url}/links/"


@pytest.fixture(scope="module")
def git_line(tmp_path_factory):
    """A git+ requirement at a commit of a repository that git daemon serves on loopback."""
    base = tmp_path_factory.mktemp("git")
    commit = commit_repo(base / "gitpkg", {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": "from setuptools import setup\nsetup(name='gitpkg', version='0.3.0', packages=['gitpkg'])\n",
        "gitpkg/__init__.py": "VALUE = 'from-git'\n"})
    with GitDaemon(base) as daemon:
        yield f"git+{daemon.url}/gitpkg@{commit}"


def sources_model(model: Path, links_url: str, local_module: str = "VALUE = 'from-project-sdist'\n",
                  git_line: str = "") -> Path:
    (model / "dist").mkdir(parents=True)
    (model / "wheels").mkdir()
    sdist_name, sdist = setup_py_sdist("localsrc", "0.1.0", local_module)
    (model / "dist" / sdist_name).write_bytes(sdist)
    wheel_name, wheel = make_wheel("localwhl", "2.0", files={"localwhl/__init__.py": b"VALUE = 'from-wheel'\n"})
    (model / "wheels" / wheel_name).write_bytes(wheel)
    lines = [f"--find-links {links_url}"] if links_url else []
    lines += ["indexsrc==1.4.0"] if links_url else []
    lines += [git_line] if git_line else []
    (model / "requirements.txt").write_text("\n".join([*lines, f"./dist/{sdist_name}", f"./wheels/{wheel_name}"]) + "\n")
    (model / "cog.yaml").write_text(json.dumps({
        "build": {"python_version": "3.11", "python_requirements": "requirements.txt"},
        "predict": "predict.py:Predictor"}))
    (model / "predict.py").write_text(PREDICT)
    return model


def lock_entries(model: Path, table: str) -> list[dict]:
    import tomllib

    return tomllib.loads((model / "cog.lock").read_text()).get(table, [])


def test_sdists_project_files_and_git_lock_build_and_import_in_podman(tmp_path, downloads, links, git_line,
                                                                       podman):
    model = sources_model(tmp_path / "model", links, git_line=git_line)
    env = clean_env(tmp_path / "first", downloads)
    cogbuild(["lock"], model, env)
    packages = {p["name"]: p for p in lock_entries(model, "package") if p["group"] == "python"}
    assert (packages["indexsrc"]["kind"], packages["indexsrc"]["url"]) == ("sdist", f"{links}indexsrc-1.4.0.tar.gz")
    assert (packages["localsrc"]["kind"], packages["localsrc"]["url"]) == ("sdist", "dist/localsrc-0.1.0.tar.gz")
    assert (packages["localwhl"]["kind"], packages["localwhl"]["url"]) == ("wheel", "wheels/localwhl-2.0-py3-none-any.whl")
    assert (packages["gitpkg"]["kind"], packages["gitpkg"]["url"]) == ("sdist", git_line)
    assert packages["srcdep"]["required-by"] == ["indexsrc"]  # known only from running indexsrc's setup.py
    tools = {p["name"]: p["required-by"] for p in lock_entries(model, "package") if p["group"] == "build"}
    assert tools == {"pip": ["cogbuild"], "setuptools": ["gitpkg", "indexsrc", "localsrc"]}
    check = run_cogbuild(["lock", "--check"], model, env)
    assert check.returncode == 1 and "records no built wheel for the sdist of gitpkg 0.3.0" in check.stderr

    digest = image_digest(cogbuild(["build", "-t", "sources:e2e"], model, env))
    builds = {b["name"]: b for b in lock_entries(model, "wheel-build")}
    assert sorted(builds) == ["gitpkg", "indexsrc", "localsrc"]
    for name, built in builds.items():
        assert built["source-sha256"] == packages[name]["sha256"]
        assert re.fullmatch(r"[0-9a-f]{64}", built["sha256"]) and built["filename"].endswith("-py3-none-any.whl")
    cogbuild(["lock", "--check"], model, env)

    # Built again with no cached layer or wheel build, the wheels and so the image are the same.
    again = clean_env(tmp_path / "second", downloads)
    assert image_digest(cogbuild(["build"], model, again)) == digest
    assert {b["name"]: b["sha256"] for b in lock_entries(model, "wheel-build")} == \
        {name: b["sha256"] for name, b in builds.items()}

    with serving(podman, f"oci:{tmp_path / 'first' / 'store'}:sources:e2e") as (base, _):
        body = httpx.post(f"{base}/predictions", json={"input": {}}, timeout=60).json()
    assert body["status"] == "succeeded", body
    values = json.loads(body["output"])
    assert values[:5] == ["from-index-sdist", "from-project-sdist", "from-wheel", "dep", "from-git"]
    assert values[5].startswith("/usr/local/lib/python3.11/dist-packages/indexsrc/")


def test_a_different_built_wheel_is_caught_and_update_run_accepts_it(tmp_path, downloads):
    # setup.py writes a new random value into the module on every build: the wheel differs each time.
    model = sources_model(tmp_path / "model", "", local_module="VALUE = 'x'\n")
    setup = "import os\nopen('localsrc/__init__.py', 'w').write('VALUE = %r\\n' % os.urandom(8).hex())\n"
    rebuild_sdist(model / "dist" / "localsrc-0.1.0.tar.gz", setup)
    env = clean_env(tmp_path / "first", downloads)
    cogbuild(["build"], model, env)
    recorded = lock_entries(model, "wheel-build")[0]["sha256"]

    fresh = clean_env(tmp_path / "second", downloads)
    failed = run_cogbuild(["build"], model, fresh)
    assert failed.returncode == 1, failed.stderr
    sentence = failed.stderr.strip().splitlines()[-1]
    assert re.search(rf"building localsrc 0\.1\.0 \(linux/amd64\) from its sdist gave sha256:[0-9a-f]{{64}}, but "
                     rf"cog\.lock records sha256:{recorded}; .* `cogbuild build --update-run`", sentence), sentence
    assert lock_entries(model, "wheel-build")[0]["sha256"] == recorded  # a failed build changes nothing

    cogbuild(["build", "--update-run"], model, fresh)
    assert lock_entries(model, "wheel-build")[0]["sha256"] != recorded
    cogbuild(["lock", "--check"], model, fresh)


def rebuild_sdist(path: Path, setup_prefix: str) -> None:
    """The sdist with `setup_prefix` run before its setup() call."""
    import io
    import tarfile

    with tarfile.open(path) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member, data in members:
            if member.name.endswith("/setup.py"):
                data = setup_prefix.encode() + data
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
