"""cogbuild in CI runners (issue #16): cogbuild's own image, built by cogbuild (image/cog.yaml through
scripts/build-image), run under podman as its non-root user with no added privileges and the host's
network, the way GitLab's Kubernetes executor, Tekton or Argo run a job's container.

Inside it cogbuild builds and pushes examples/hello to a loopback docker-registry with the digest this host
builds from the same cog.lock, and the commands of docs/ci's GitHub Actions and GitLab CI files run as
those runners would run them, with stand-ins for their variables, the registry and the comment API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
import yaml

from cli_helpers import REPO, cogbuild, copy_model, isolated_env
from components import podman_command, require
from oci_registry_server import PASSWORD, USER, RegistryServer, htpasswd_line
from static_server import StaticServer

import cogbuild as cogbuild_package

pytestmark = [pytest.mark.e2e, pytest.mark.network]

IMAGE_USER = 1000  # image/cog.yaml's images run as 1000:1000
# The host's CA bundle, mounted as a runner mounts its own: this host's egress re-signs TLS.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MANIFEST_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def test_the_image_description_pins_this_cogbuild():
    """image/requirements.txt names the version this checkout's wheel has, or the lock would not find it."""
    pins = [line for line in (REPO / "image" / "requirements.txt").read_text().splitlines()
            if line.startswith("cogbuild")]
    assert pins == [f"cogbuild=={cogbuild_package.__version__}"]


@pytest.fixture(scope="module")
def podman() -> list[str]:
    return podman_command()


@pytest.fixture(scope="module")
def cogbuild_image(podman, tmp_path_factory) -> Iterator[str]:
    """scripts/build-image, loaded into podman under a name of this run's own."""
    root = tmp_path_factory.mktemp("cogbuild-image")
    name = f"cogbuild-e2e-{uuid.uuid4().hex[:12]}:ci"
    archive = root / "cogbuild.tar"
    built = subprocess.run([str(REPO / "scripts" / "build-image"), "-t", name, "-o", f"oci-archive:{archive}"],
                           env={**isolated_env(root), "PYTHON": sys.executable}, capture_output=True, text=True,
                           timeout=1200)
    assert built.returncode == 0, built.stderr
    loaded = subprocess.run([*podman, "load", "-q", "-i", str(archive)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    image = f"localhost/{name}"
    try:
        yield image
    finally:
        subprocess.run([*podman, "rmi", "-f", image], capture_output=True)


@pytest.fixture
def registry(tmp_path) -> Iterator[RegistryServer]:
    """docker-registry on loopback with an account, so the workflows' login steps log in for real."""
    (tmp_path / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
    server = RegistryServer(tmp_path / "registry",
                            auth={"htpasswd": {"realm": "ci", "path": str(tmp_path / "htpasswd")}}).start()
    try:
        yield server
    finally:
        server.stop()


def host_cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    run = cogbuild(args, cwd, env)
    assert run.code == 0, f"cogbuild {' '.join(args)} on the host failed:\n{run.err}"
    return run.out


def container_options(mounts: dict[Path, str], env: dict[str, str]) -> list[str]:
    """Host network (the loopback registry), the given mounts and variables, the host's CA bundle; nothing
    privileged: no --privileged, no capabilities, no devices."""
    options = ["--network", "host"]
    if CA_BUNDLE.is_file():
        mounts = {**mounts, CA_BUNDLE: f"{CA_BUNDLE}:ro"}
    for host, inside in mounts.items():
        options += ["-v", f"{host}:{inside}"]
    for key, value in env.items():
        options += ["-e", f"{key}={value}"]
    return options


def own(path: Path, uid: int) -> Path:
    """The job's user owns `path` (made if missing), as a runner's checkout and home are the job's."""
    path.mkdir(exist_ok=True)
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(path)], check=True)
    return path


def pushed_digest(registry: RegistryServer, repository: str, tag: str) -> str | None:
    answer = httpx.get(f"http://{registry.host}/v2/{repository}/manifests/{tag}", auth=(USER, PASSWORD),
                       headers={"Accept": MANIFEST_TYPES})
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return answer.headers["Docker-Content-Digest"]


def test_cogbuild_image_is_an_app_that_runs_as_its_user(podman, cogbuild_image):
    inspected = subprocess.run([*podman, "image", "inspect", cogbuild_image], capture_output=True, text=True)
    config = json.loads(inspected.stdout)[0]["Config"]
    assert config["Entrypoint"] == ["cogbuild"] and config["User"] == f"{IMAGE_USER}:{IMAGE_USER}"
    assert not [e for e in config["Env"] if e.startswith("COG_")]
    status = subprocess.run([*podman, "run", "--rm", "--entrypoint", "python3", cogbuild_image, "-c",
                             "import os; print(os.getuid(), os.getgid(), os.path.exists('/opt/cogbuild'));"
                             "print(open('/proc/self/status').read())"], capture_output=True, text=True)
    ids, rest = status.stdout.split("\n", 1)
    assert ids == f"{IMAGE_USER} {IMAGE_USER} False", "the image's user, and no Cog runtime"
    assert re.search(r"^CapEff:\s+0+$", rest, re.M), "the job has no capabilities"
    version = subprocess.run([*podman, "run", "--rm", cogbuild_image, "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"cogbuild, version {cogbuild_package.__version__}"


def test_in_the_image_hello_builds_and_pushes_with_the_digest_this_host_builds(podman, cogbuild_image, registry,
                                                                               tmp_path):
    model = own(copy_model("hello", tmp_path / "hello"), IMAGE_USER)
    home = own(tmp_path / "home", IMAGE_USER)  # the cache, kept across jobs
    options = container_options({model: "/work/hello", home: "/home/cog"}, {"HOME": "/home/cog"})
    ref = f"{registry.host}/ci/hello:v1"

    def in_image(*args: str) -> str:
        done = subprocess.run([*podman, "run", "--rm", *options, "-w", "/work/hello", cogbuild_image, *args],
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"cogbuild {' '.join(args)} in the image failed:\n{done.stderr}"
        return done.stdout.strip().splitlines()[-1]

    login = subprocess.run([*podman, "run", "--rm", "-i", *options, cogbuild_image, "login", registry.host,
                            "-u", USER, "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True)
    assert login.returncode == 0, login.stderr
    built = in_image("build")
    pushed = in_image("push", ref)
    assert DIGEST.fullmatch(built) and pushed == f"{ref}@{built}"
    assert pushed_digest(registry, "ci/hello", "v1") == built

    # The same cog.lock on this host, as root, outside any container: the same image, byte for byte.
    assert (model / "cog.lock").is_file(), "the build in the image locked the model"
    host_model = tmp_path / "host-hello"
    shutil.copytree(model, host_model)
    assert host_cogbuild(["--quiet", "build"], host_model, isolated_env(tmp_path / "host")).strip() == built


# --- docs/ci: each workflow's commands, run in the image as its runner would ---------------------------------


@dataclass
class ModelRepository:
    """A model's git repository: `main` with cog.lock, and `change`, which adds a requirement and re-locks."""

    origin: Path  # a bare repository, the runners' `origin`
    base_lock: Path
    head_lock: Path


def git(cwd: Path, *args: str) -> str:
    """git on the host, as root, over repositories the jobs' users own (safe.directory is read only from
    global or system configuration, also by the upload-pack a clone starts)."""
    with tempfile.NamedTemporaryFile("w", suffix=".gitconfig") as config:
        config.write("[safe]\n\tdirectory = *\n[user]\n\tname = ci\n\temail = ci@example.invalid\n")
        config.flush()
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "GIT_CONFIG_GLOBAL": config.name})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory) -> ModelRepository:
    require("git")
    root = tmp_path_factory.mktemp("model-repository")
    env = isolated_env(root)
    work = copy_model("hello", root / "work")
    (work / ".gitignore").unlink(missing_ok=True)  # the example leaves cog.lock out; a model's repository has it
    git(work, "init", "-q", "-b", "main")
    host_cogbuild(["--quiet", "lock"], work, env)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "hello")
    base_lock = shutil.copy(work / "cog.lock", root / "base.lock")
    git(work, "checkout", "-q", "-b", "change")
    (work / "requirements.txt").write_text("six==1.17.0\n")
    config = work / "cog.yaml"
    config.write_text(config.read_text().replace("build:\n", "build:\n  python_requirements: requirements.txt\n"))
    host_cogbuild(["--quiet", "lock"], work, env)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "six")
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(work), str(origin))
    return ModelRepository(own(origin, IMAGE_USER), Path(base_lock), work / "cog.lock")


def checkout(repository: ModelRepository, branch: str, dest: Path, uid: int) -> tuple[Path, str]:
    """What the runner's checkout gives the job: a clone of origin at `branch`, owned by the job's user."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    git(dest.parent, "clone", "-q", "--branch", branch, str(repository.origin), str(dest))
    return own(dest, uid), git(dest, "rev-parse", "HEAD")


def host_markdown_diff(repository: ModelRepository, tmp_path: Path) -> str:
    """The same command on this host, for the comment the job must have posted."""
    work = tmp_path / "host-diff"
    shutil.copytree(repository.head_lock.parent, work, ignore=shutil.ignore_patterns(".git"))
    return host_cogbuild(["--quiet", "lock", "--diff", str(repository.base_lock), "--format", "markdown"], work,
                         isolated_env(tmp_path / "host-diff-env"))


def assert_posted_lock_diff(api: StaticServer, path: str, header: tuple[str, str], body: str, expected: str) -> None:
    assert [(p, h.get(header[0])) for p, h, _ in api.posts] == [(path, header[1])]
    assert body == expected and "six" in body and "1.17.0" in body, body


GITHUB_STEP_ENV = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def github_condition(expression: str | None, event: str) -> bool:
    """The `if:` forms the workflow uses; any other is a failure, since this runner could not judge it."""
    if expression is None:
        return True
    match = re.fullmatch(r"github\.event_name == '(\w+)'", expression.strip())
    assert match, f"docs/ci/github-actions.yml: this test cannot evaluate `if: {expression}`"
    return match.group(1) == event


def run_github_job(podman: list[str], image: str, event: str, workspace: Path, home: Path, temp: Path,
                   variables: dict[str, str], expressions: dict[str, str]) -> list[str]:
    """Like GitHub's runner for a `container:` job: the container kept alive with `tail -f /dev/null` as the
    job's --user, each `run:` step exec'd with `sh -e` (the image has no bash); returns each step's stdout."""
    workflow = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    job = workflow["jobs"]["model"]
    user = re.fullmatch(r"--user (\d+)", job["container"]["options"]).group(1)
    name = f"cogbuild-e2e-github-{uuid.uuid4().hex[:12]}"
    mounts = {workspace: "/github/workspace", home: "/github/home", temp: "/__w/_temp"}
    env = {**{k: str(v) for k, v in workflow["env"].items()}, **variables, "HOME": "/github/home",
           "RUNNER_TEMP": "/__w/_temp", "GITHUB_WORKSPACE": "/github/workspace", "GITHUB_EVENT_NAME": event,
           "CI": "true", "GITHUB_ACTIONS": "true"}
    started = subprocess.run([*podman, "run", "-d", "--rm", "--name", name, "--user", user,
                              *container_options(mounts, env), "-w", "/github/workspace", "--entrypoint", "tail",
                              image, "-f", "/dev/null"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    outputs = []
    try:
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"].startswith("actions/checkout@"), step  # the test checked out already
                continue
            if not github_condition(step.get("if"), event):
                continue
            assert "${{" not in step["run"], f"step {step['name']!r}: run: reads only environment variables"
            step_env = {k: GITHUB_STEP_ENV.sub(lambda m: expressions[m.group(1)], str(v))
                        for k, v in step.get("env", {}).items()}
            done = subprocess.run([*podman, "exec", *[f"-e{k}={v}" for k, v in step_env.items()], name,
                                   "sh", "-e", "-c", step["run"]], capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"step {step['name']!r} failed:\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "0", name], capture_output=True)
    return outputs


def test_the_github_actions_workflow_runs_in_the_image(podman, cogbuild_image, registry, model_repository,
                                                       tmp_path):
    runner_uid = 1001
    home = own(tmp_path / "home", runner_uid)  # kept across jobs
    repo_variables = {"GITHUB_REPOSITORY": "acme/hello", "GITHUB_ACTOR": USER, "REGISTRY": registry.host}
    with StaticServer() as api:
        expressions = {"secrets.GITHUB_TOKEN": PASSWORD, "github.event.pull_request.number": "7"}
        workspace, sha = checkout(model_repository, "change", tmp_path / "pr", runner_uid)
        temp = own(tmp_path / "pr-temp", runner_uid)
        run_github_job(podman, cogbuild_image, "pull_request", workspace, home, temp,
                       {**repo_variables, "GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "change", "GITHUB_SHA": sha,
                        "GITHUB_API_URL": api.url}, expressions)
        body = json.loads(api.posts[0][2])["body"] if api.posts else ""
        assert_posted_lock_diff(api, "/repos/acme/hello/issues/7/comments", ("Authorization", f"Bearer {PASSWORD}"),
                                body, host_markdown_diff(model_repository, tmp_path))

    workspace, sha = checkout(model_repository, "main", tmp_path / "main", runner_uid)
    temp = own(tmp_path / "main-temp", runner_uid)
    outputs = run_github_job(podman, cogbuild_image, "push", workspace, home, temp,
                             {**repo_variables, "GITHUB_SHA": sha, "GITHUB_API_URL": "http://127.0.0.1:9"},
                             {"secrets.GITHUB_TOKEN": PASSWORD})
    ref = f"{registry.host}/acme/hello:{sha}"
    assert outputs[-1].strip() == f"{ref}@{pushed_digest(registry, 'acme/hello', sha)}"


def run_gitlab_job(podman: list[str], image: str, job: str, repository: ModelRepository, branch: str,
                   workdir: Path, variables: dict[str, str]) -> str:
    """Like GitLab's Kubernetes executor: a fresh checkout and a fresh container of the job's image as the
    image's own user, its entrypoint replaced as the file says, the script's lines run by `sh -e`."""
    workspace, sha = checkout(repository, branch, workdir / job, IMAGE_USER)
    variables = {**variables, "CI_COMMIT_SHA": sha}
    pipeline = yaml.safe_load((REPO / "docs" / "ci" / "gitlab-ci.yml").read_text())
    image_spec = pipeline["default"]["image"]
    assert image_spec["entrypoint"] == [""], "the image's entrypoint (cogbuild) would swallow the runner's shell"
    script = "\n".join(pipeline[job]["script"])
    mounts = {workspace: "/builds/acme/hello", repository.origin: str(repository.origin)}  # origin: as cloned
    done = subprocess.run([*podman, "run", "--rm", *container_options(mounts, variables),
                           "-w", "/builds/acme/hello", "--entrypoint", "", image, "sh", "-e", "-c", script],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"job {job} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_gitlab_ci_pipeline_runs_in_the_image(podman, cogbuild_image, registry, model_repository, tmp_path):
    pipeline = yaml.safe_load((REPO / "docs" / "ci" / "gitlab-ci.yml").read_text())
    assert pipeline["stages"] == ["check", "image"] and [pipeline[j]["stage"] for j in ("lock", "image")] == \
        ["check", "image"]
    project = {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_ID": "42", "CI_DEFAULT_BRANCH": "main",
               "CI_REGISTRY": registry.host, "CI_REGISTRY_IMAGE": f"{registry.host}/acme/hello",
               "CI_REGISTRY_USER": USER, "CI_REGISTRY_PASSWORD": PASSWORD, "GITLAB_TOKEN": "glpat-stand-in"}
    with StaticServer() as api:
        merge_request = {**project, "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "7",
                         "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_API_V4_URL": f"{api.url}/api/v4"}
        for job in ("lock", "image"):
            run_gitlab_job(podman, cogbuild_image, job, model_repository, "change", tmp_path / "mr", merge_request)
        body = parse_qs(api.posts[0][2].decode())["body"][0] if api.posts else ""
        assert_posted_lock_diff(api, "/api/v4/projects/42/merge_requests/7/notes",
                                ("PRIVATE-TOKEN", "glpat-stand-in"), body,
                                host_markdown_diff(model_repository, tmp_path))
    head = git(tmp_path / "mr" / "image", "rev-parse", "HEAD")
    assert pushed_digest(registry, "acme/hello", head) is None, "a merge request's pipeline pushes nothing"

    default_branch = {**project, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main"}
    for job in ("lock", "image"):
        output = run_gitlab_job(podman, cogbuild_image, job, model_repository, "main", tmp_path / "main",
                                default_branch)
    sha = git(tmp_path / "main" / "image", "rev-parse", "HEAD")
    ref = f"{registry.host}/acme/hello:{sha}"
    assert output.strip().splitlines()[-1] == f"{ref}@{pushed_digest(registry, 'acme/hello', sha)}"
