"""Small pure functions: target tags and markers, requirements text parsing."""

from __future__ import annotations

import pytest

from cogbuild.errors import CogbuildError
from cogbuild.pyresolve import Target
from cogbuild.pyresolve.reqfile import parse, without_index_options


def test_platform_tags_run_from_the_image_glibc_down():
    platforms = Target("3.11", "x86_64", "2.28").platforms()
    assert platforms[0] == "manylinux_2_28_x86_64" and platforms[-1] == "manylinux1_x86_64"
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_29_x86_64" not in platforms
    arm = Target("3.12", "aarch64", "2.17").platforms()
    assert arm == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]


def test_tag_order_prefers_the_cpython_abi_then_abi3_then_pure():
    tags = [str(t) for t in Target("3.11", "x86_64", "2.36").tags()]
    assert tags.index("cp311-cp311-manylinux_2_36_x86_64") < tags.index("cp311-abi3-manylinux_2_17_x86_64")
    assert tags.index("cp38-abi3-manylinux_2_17_x86_64") < tags.index("py3-none-any")
    assert not any("macosx" in t or "win" in t or "musllinux" in t for t in tags)


def test_markers_describe_the_image():
    environment = Target("3.13", "aarch64").marker_environment()
    assert (environment["platform_machine"], environment["python_version"], environment["sys_platform"]) == \
        ("aarch64", "3.13", "linux")
    assert Target("3.11", python_full_version="3.11.2").marker_environment()["python_full_version"] == "3.11.2"


def test_glibc_older_than_manylinux_is_refused():
    with pytest.raises(CogbuildError, match="glibc 2.12 is older than any manylinux wheel for aarch64"):
        Target("3.11", "aarch64", "2.12")


def test_requirements_text_with_options_hashes_and_comments():
    parsed = parse(
        "-i https://mirror.example/simple\n"
        "--extra-index-url=https://extra.example/simple\n"
        "--find-links ./wheels  # local builds\n"
        "foo==1.0 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "B" * 64 + "\n"
        "    # via\n    #   bar\n    #   -r requirements.in\n"
        "baz @ https://example.com/baz-1.0-py3-none-any.whl#sha256=" + "c" * 64 + "\n"
        "--only-binary :all:\n"
    )
    assert parsed.index_url == "https://mirror.example/simple"
    assert parsed.extra_index_urls == ["https://extra.example/simple"]
    assert parsed.find_links == ["./wheels"]
    assert parsed.other_options == ["--only-binary :all:"]
    foo, baz = parsed.requirements
    assert (foo.text, foo.hashes, foo.via) == ("foo==1.0", ["a" * 64, "b" * 64], ["bar", "-r requirements.in"])
    assert baz.text.endswith("#sha256=" + "c" * 64)  # a URL fragment is not a comment


def test_index_lines_are_dropped_for_pip_but_the_rest_stays():
    text = "-i https://a/simple\n--index-url=https://b/simple\n--extra-index-url https://c\n-f ./w\nfoo\n"
    assert without_index_options(text) == "-f ./w\nfoo"
