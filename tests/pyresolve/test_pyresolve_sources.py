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
        assert "purelib" not in archive.extractfile(f"oldstyle-1.4.0/PKG-INFO").read().decode()
