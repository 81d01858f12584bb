"""resolve_requirements against a local wheel index: tags, markers, extras, hashes, options, errors."""

from __future__ import annotations

import pytest
from wheelindex import Dist, build_wheel, sha256_of

from cogbuild.errors import CogbuildError
from cogbuild.pyresolve import Target, resolve_requirements

X86 = Target("3.11", "x86_64", "2.36")
ARM = Target("3.11", "aarch64", "2.36")


def files(artifacts):
    return {a.name: a.filename for a in artifacts}


def test_closure_is_pinned_with_exact_url_hash_and_size(index, simple_url, wheel_dir):
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url)
    assert [(a.name, a.version) for a in artifacts] == [("helper", "2.0"), ("purelib", "1.0")]
    for artifact in artifacts:
        local = wheel_dir / artifact.filename
        assert artifact.kind == "wheel"
        assert artifact.url == f"{index.url}/files/{artifact.filename}"
        assert artifact.sha256 == sha256_of(local)
        assert artifact.size == local.stat().st_size
    assert {a.name: a.required_by for a in artifacts} == {"helper": ("purelib",), "purelib": ("request",)}


@pytest.mark.parametrize("target, expected", [
    (X86, "fastmath-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    (Target("3.11", "x86_64", "2.27"), "fastmath-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
    (ARM, "fastmath-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
    (Target("3.12", "x86_64"), "fastmath-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
])
def test_best_manylinux_wheel_for_the_target(simple_url, target, expected):
    assert files(resolve_requirements(["fastmath"], target, index_url=simple_url))["fastmath"] == expected


def test_abi3_wheel_beats_pure_python_and_pure_python_serves_arm(simple_url):
    assert files(resolve_requirements(["stable"], Target("3.13", "x86_64"), index_url=simple_url))["stable"] == \
        "stable-1.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert files(resolve_requirements(["stable"], ARM, index_url=simple_url))["stable"] == "stable-1.0-py3-none-any.whl"


@pytest.mark.parametrize("target, expected", [
    (X86, {"markers", "x86dep", "oldpy"}),
    (ARM, {"markers", "armdep", "oldpy"}),
    (Target("3.13", "aarch64"), {"markers", "armdep"}),
])
def test_markers_are_evaluated_for_the_image_not_the_host(simple_url, target, expected):
    assert set(files(resolve_requirements(["markers"], target, index_url=simple_url))) == expected


def test_extras_pull_their_dependencies(simple_url):
    artifacts = resolve_requirements(["withextra[more]"], X86, index_url=simple_url)
    assert [(a.name, a.version, a.required_by) for a in artifacts] == [
        ("helper", "1.0", ("withextra",)), ("withextra", "1.0", ("request",))]
    without_extra = resolve_requirements(["withextra"], X86, index_url=simple_url)
    assert files(without_extra) == {"withextra": "withextra-1.0-py3-none-any.whl"}


def test_requires_python_is_checked_against_the_target(simple_url):
    assert files(resolve_requirements(["newpy"], Target("3.13", "x86_64"), index_url=simple_url))
    with pytest.raises(CogbuildError, match=r"^newpy 1.0 requires Python >=3.13, but the image has Python 3.11.$"):
        resolve_requirements(["newpy"], X86, index_url=simple_url)


def test_constraints_narrow_the_choice(simple_url):
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url, constraints=["helper<2"])
    assert files(artifacts)["helper"] == "helper-1.0-py3-none-any.whl"


def test_hash_pins_are_honoured(simple_url, wheel_dir):
    good = sha256_of(wheel_dir / "helper-1.0-py3-none-any.whl")
    artifacts = resolve_requirements([f"helper==1.0 --hash=sha256:{good}"], X86, index_url=simple_url)
    assert [a.sha256 for a in artifacts] == [good]
    with pytest.raises(CogbuildError, match="hash"):
        resolve_requirements([f"helper==1.0 --hash=sha256:{'0' * 64}"], X86, index_url=simple_url)


def test_index_and_find_links_lines_inside_the_requirements(index, tmp_path):
    build_wheel(tmp_path, Dist("localonly", "3.0", requires=["helper==1.0"]))
    artifacts = resolve_requirements([f"--index-url {index.url}/simple/", f"--find-links {tmp_path}", "localonly"], X86)
    local = {a.name: a for a in artifacts}["localonly"]
    assert local.url == (tmp_path / local.filename).resolve().as_uri()
    assert local.sha256 == sha256_of(tmp_path / local.filename)
    assert local.size == (tmp_path / local.filename).stat().st_size
    assert {a.name: a.version for a in artifacts} == {"helper": "1.0", "localonly": "3.0"}


def test_html_index_without_sizes_is_measured(index, wheel_dir):
    artifacts = resolve_requirements(["purelib"], X86, index_url=index.url + "/html/")
    assert [a.size for a in artifacts] == [(wheel_dir / a.filename).stat().st_size for a in artifacts]


def test_missing_wheel_for_the_platform_names_the_platform(simple_url):
    with pytest.raises(CogbuildError) as error:
        resolve_requirements(["x86only"], ARM, index_url=simple_url)
    message = str(error.value)
    assert "x86only 1.0 has no wheel for CPython 3.11 on linux/aarch64" in message
    assert message.endswith("(its wheels are for cp311 on linux/x86_64).") and "\n" not in message


def test_unknown_package_and_unknown_version(simple_url):
    with pytest.raises(CogbuildError, match="'no-such-thing' names a package that does not exist"):
        resolve_requirements(["no-such-thing"], X86, index_url=simple_url)
    with pytest.raises(CogbuildError, match=r"No release of helper matches 'helper==9.9' \(the newest is 2.0\)"):
        resolve_requirements(["helper==9.9"], X86, index_url=simple_url)


def test_source_only_release_is_refused_clearly(simple_url):
    with pytest.raises(CogbuildError, match="srconly 1.0 has no wheel, only a source distribution"):
        resolve_requirements(["srconly"], X86, index_url=simple_url)
    # Allowed, its dependencies come from its build backend, whose setuptools this index does not have.
    with pytest.raises(CogbuildError, match=r"The build requirements of srconly-1.0.tar.gz \(setuptools>=40.8.0\) "
                                            "could not be installed to read its dependencies"):
        resolve_requirements(["srconly"], X86, index_url=simple_url, allow_sdist=True)


def test_static_sdist_joins_the_lock_when_allowed(index, simple_url, wheel_dir):
    artifacts = resolve_requirements(["staticsrc"], X86, index_url=simple_url, allow_sdist=True)
    by_name = {a.name: a for a in artifacts}
    source = by_name["staticsrc"]
    assert (source.kind, source.version, source.filename) == ("sdist", "1.0", "staticsrc-1.0.tar.gz")
    assert source.url == f"{index.url}/files/staticsrc-1.0.tar.gz" and source.required_by == ("request",)
    assert source.sha256 == sha256_of(wheel_dir / source.filename)
    assert source.size == (wheel_dir / source.filename).stat().st_size
    assert (by_name["helper"].version, by_name["helper"].required_by) == ("1.0", ("staticsrc",))
    assert source.build_requires == ("setuptools>=40.8.0",)  # no pyproject.toml: PEP 517's default, unrun
    pinned = resolve_requirements(["staticsrc==0.9"], X86, index_url=simple_url, allow_sdist=True)
    assert [(a.name, a.version, a.kind) for a in pinned] == [("staticsrc", "0.9", "sdist")]


def test_sdist_with_dynamic_dependencies_asks_its_build_backend(simple_url):
    with pytest.raises(CogbuildError, match="The build requirements of dynsrc-1.0.tar.gz .* could not be installed"):
        resolve_requirements(["dynsrc"], X86, index_url=simple_url, allow_sdist=True)
    with pytest.raises(CogbuildError, match="staticsrc 1.0 has no wheel, only a source distribution"):
        resolve_requirements(["staticsrc"], X86, index_url=simple_url)


def test_conflicts_name_their_causes(simple_url):
    with pytest.raises(CogbuildError) as error:
        resolve_requirements(["withextra[more]", "helper>=2"], X86, index_url=simple_url)
    message = str(error.value)
    assert message.startswith("The Python requirements conflict for CPython 3.11 on linux/x86_64")
    assert "The user requested helper>=2; withextra[more] 1.0 depends on helper<2" in message
    assert "\n" not in message and ".." not in message


def test_invalid_requirement_is_one_sentence(simple_url):
    with pytest.raises(CogbuildError, match="not valid PEP 508") as error:
        resolve_requirements(["foo bar baz"], X86, index_url=simple_url)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("line", ["-r other.txt", "--requirement=other.txt", "-e .", "-c constraints.txt"])
def test_lines_naming_other_files_are_refused_not_dropped(line):
    with pytest.raises(CogbuildError, match="refers to a file or directory"):
        resolve_requirements([line], X86)


def test_local_paths_are_refused():
    with pytest.raises(CogbuildError, match="'./src/mypkg' is a local path"):
        resolve_requirements(["./src/mypkg"], X86)


def test_nothing_to_resolve():
    assert resolve_requirements(["# just a comment", ""], X86) == []
