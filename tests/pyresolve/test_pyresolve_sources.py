"""Requirements that name files in the project (a wheel, an sdist) and sdists whose dependencies only
their setup.py knows: what the lock pins for them, and the one sentence bad lines get."""

from __future__ import annotations

import hashlib
import tarfile

import pytest
from sdist_fixtures import setup_py_sdist
from wheelindex import Dist, build_sdist, build_wheel, sha256_of

from cogbuild.errors import UsageError
from cogbuild.pyresolve import Target, check_requirements, resolve_requirements

X86 = Target("3.11", "x86_64", "2.36")


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "model"
    (root / "dist").mkdir(parents=True)
    (root / "wheels").mkdir()
    return root


def test_project_wheel_and_static_sdist_are_pinned_by_path_and_sha256(project, simple_url):
    wheel = build_wheel(project / "wheels", Dist("ownwheel", "3.0", requires=["helper<2"]))
    source = build_sdist(project / "dist", "ownsrc", "0.1.0", "2.2", requires=("purelib",))
    artifacts = resolve_requirements([f"./wheels/{wheel.name}", "./dist/../dist/ownsrc-0.1.0.tar.gz"],
                                     X86, index_url=simple_url, allow_sdist=True, project_root=project)
    by_name = {a.name: a for a in artifacts}
    assert sorted(by_name) == ["helper", "ownsrc", "ownwheel", "purelib"]
    own_wheel, own_source = by_name["ownwheel"], by_name["ownsrc"]
    assert (own_wheel.kind, own_wheel.version, own_wheel.url) == ("wheel", "3.0", f"wheels/{wheel.name}")
    assert (own_wheel.sha256, own_wheel.size) == (sha256_of(wheel), wheel.stat().st_size)
    assert (own_source.kind, own_source.version, own_source.url) == ("sdist", "0.1.0", "dist/ownsrc-0.1.0.tar.gz")
    assert own_source.sha256 == sha256_of(source) and own_source.required_by == ("request",)
    # Their dependencies joined the closure from their metadata: helper<2 from the wheel, purelib's helper.
    assert by_name["helper"].version == "1.0" and by_name["purelib"].required_by == ("ownsrc",)


def test_a_project_file_is_refused_without_a_project(project, simple_url):
    with pytest.raises(UsageError, match="is a local path"):
        resolve_requirements(["./dist/ownsrc-0.1.0.tar.gz"], X86, index_url=simple_url)


@pytest.mark.parametrize("line, sentence", [
    ("../elsewhere-1.0.tar.gz", "is outside the project directory"),
    ("/etc/passwd", "is outside the project directory"),
    ("~/pkg-1.0.tar.gz", "is outside the project directory"),
    ("./dist/missing-1.0.tar.gz", "names a file that does not exist"),
    ("./dist", "is not a wheel or a source archive"),
    ("git+https://example.com/repo.git@main", "pin a full 40-character commit"),
    ("pkg @ git+https://example.com/repo.git", "pin a full 40-character commit"),
])
def test_bad_lines_get_one_sentence_before_any_download(project, line, sentence):
    with pytest.raises(UsageError, match=sentence) as error:
        check_requirements(["numpy==2.0.0", line], project)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


@pytest.mark.network
def test_setup_py_only_sdist_gets_its_dependencies_from_its_backend(project, tmp_path):
    """gputil 1.4.0's case: PKG-INFO 1.1 lists no dependencies; only running setup.py tells them."""
    name, data = setup_py_sdist("oldstyle", "1.4.0", "VALUE = 1\n", install_requires=("cogbuild-fixture-dep",))
    (project / "dist" / name).write_bytes(data)
    links = tmp_path / "links"
    links.mkdir()
    build_wheel(links, Dist("cogbuild-fixture-dep", "7.7.7"))
    # The backend's setuptools comes from PyPI, the dependency from a --find-links directory.
    artifacts = resolve_requirements([f"--find-links {links}", f"./dist/{name}"], X86, allow_sdist=True,
                                     project_root=project)
    by_name = {a.name: a for a in artifacts}
    assert sorted(by_name) == ["cogbuild-fixture-dep", "oldstyle"]
    assert by_name["oldstyle"].kind == "sdist" and by_name["cogbuild-fixture-dep"].required_by == ("oldstyle",)
    assert by_name["oldstyle"].sha256 == hashlib.sha256(data).hexdigest()
    assert by_name["oldstyle"].build_requires == ("setuptools>=40.8.0",)
    with tarfile.open(project / "dist" / name) as archive:  # the fixture really hides its dependencies
        assert "purelib" not in archive.extractfile("oldstyle-1.4.0/PKG-INFO").read().decode()


GIT_SETUP = "from setuptools import setup\nsetup(name='gitpkg', version='0.3.0', packages=['gitpkg'])\n"


@pytest.mark.network
def test_git_commit_is_pinned_as_the_sha256_of_its_tree(tmp_path):
    from git_server import GitDaemon, commit_repo

    from cogbuild.gitsource import archive, parse_git_requirement

    commit = commit_repo(tmp_path / "git" / "gitpkg", {"setup.py": GIT_SETUP, "gitpkg/__init__.py": "V = 3\n"})
    with GitDaemon(tmp_path / "git") as daemon:
        line = f"git+{daemon.url}/gitpkg@{commit}"
        artifacts = resolve_requirements([line], X86, allow_sdist=True)
        assert [a.name for a in artifacts] == ["gitpkg"]
        artifact = artifacts[0]
        (tmp_path / "again").mkdir()
        again = archive(parse_git_requirement(line), tmp_path / "again")
    assert (artifact.kind, artifact.name, artifact.version) == ("sdist", "gitpkg", "0.3.0")
    assert (artifact.url, artifact.filename) == (line, f"gitpkg-{commit[:12]}.tar")
    assert artifact.sha256 == sha256_of(again) and artifact.size == again.stat().st_size
    with tarfile.open(again) as tree:
        assert sorted(tree.getnames()) == [f"gitpkg-{commit[:12]}", f"gitpkg-{commit[:12]}/gitpkg",
                                           f"gitpkg-{commit[:12]}/gitpkg/__init__.py", f"gitpkg-{commit[:12]}/setup.py"]


def test_git_fetch_failure_is_one_sentence(tmp_path):
    from cogbuild.errors import CogbuildError
    from cogbuild.gitsource import archive, parse_git_requirement

    missing = parse_git_requirement(f"git+file://{tmp_path}/nothing-here@{'a' * 40}")
    with pytest.raises(CogbuildError, match=f"git could not fetch commit {'a' * 40} from file://") as error:
        archive(missing, tmp_path)
    assert "\n" not in str(error.value)


def test_a_project_wheel_wins_over_the_same_release_on_the_index(project, simple_url):
    """helper 1.0 is on the index too; the line names the project's own file, so that is what is pinned."""
    own = build_wheel(project / "wheels", Dist("helper", "1.0", requires=["x86dep"]))
    artifacts = resolve_requirements([f"./wheels/{own.name}"], X86, index_url=simple_url, project_root=project)
    helper = next(a for a in artifacts if a.name == "helper")
    assert (helper.url, helper.sha256) == (f"wheels/{own.name}", sha256_of(own))
    assert [a.name for a in artifacts] == ["helper", "x86dep"]
