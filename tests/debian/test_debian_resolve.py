"""Resolution rules on in-memory Packages indexes: fast, offline, no signing involved."""

from __future__ import annotations

import hashlib

import pytest
from debian import deb822

from cogbuild.artifacts import Artifact
from cogbuild.debian import index as index_module
from cogbuild.debian.archive import PackagesText
from cogbuild.debian.index import PackageIndex
from cogbuild.debian.release import IndexFile
from cogbuild.debian.resolve import Resolver
from cogbuild.debian.source import Archive
from cogbuild.errors import CogbuildError
from full_parse import assert_answers_as_a_full_parse

MIRROR = "http://mirror.invalid/debian"


def stanza(name: str, version: str = "1.0", arch: str = "amd64", **fields: str) -> str:
    filename = f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb"
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    lines += [f"{key.replace('_', '-').title()}: {value}" for key, value in fields.items()]
    sha = hashlib.sha256(filename.encode()).hexdigest()
    lines += [f"Filename: {filename}", f"Size: {len(filename)}", f"SHA256: {sha}"]
    return "\n".join(lines) + "\n"


def text_of(*stanzas: str, arch: str = "amd64", mirror: str = MIRROR) -> PackagesText:
    data = "\n".join(stanzas).encode()
    index = IndexFile(f"main/binary-{arch}/Packages", hashlib.sha256(data).hexdigest(), len(data))
    return PackagesText(Archive(mirror), "testing", index, data)


def index_of(*stanzas: str, arch: str = "amd64", mirror: str = MIRROR) -> PackageIndex:
    return PackageIndex.from_texts([text_of(*stanzas, arch=arch, mirror=mirror)], arch)


def resolve(index: PackageIndex, *requests: str, arch: str = "amd64", **options) -> dict[str, Artifact]:
    artifacts = Resolver(index, suite="testing", arch=arch, **options).closure(list(requests))
    assert [a.name for a in artifacts] == sorted(a.name for a in artifacts)
    return {artifact.name: artifact for artifact in artifacts}


def test_closure_follows_depends_and_pre_depends_but_not_recommends():
    index = index_of(
        stanza("app", depends="libfoo (>= 1.0)", pre_depends="libpre", recommends="extra", suggests="more"),
        stanza("libfoo", "1.2", depends="libc6"),
        stanza("libpre", depends="libc6"),
        stanza("libc6", "2.36"),
        stanza("extra"),
        stanza("more"),
        stanza("unrelated"),
    )
    closure = resolve(index, "app")
    assert set(closure) == {"app", "libfoo", "libpre", "libc6"}
    libfoo = closure["libfoo"]
    assert libfoo.kind == "deb" and libfoo.version == "1.2"
    assert libfoo.url == f"{MIRROR}/pool/main/l/libfoo/libfoo_1.2_amd64.deb"
    assert libfoo.filename == "libfoo_1.2_amd64.deb"
    assert libfoo.sha256 == hashlib.sha256(b"pool/main/l/libfoo/libfoo_1.2_amd64.deb").hexdigest()
    assert closure["app"].required_by == ("request",)
    assert closure["libc6"].required_by == ("libfoo", "libpre")


def test_essential_packages_are_not_added_implicitly():
    index = index_of(stanza("app"), stanza("bash", essential="yes", priority="required"))
    assert set(resolve(index, "app")) == {"app"}


def test_alternatives_take_the_first_satisfiable_one():
    index = index_of(stanza("app", depends="missing | libold (>= 2) | libb | libc"), stanza("libold", "1.0"),
                     stanza("libb"), stanza("libc"))  # fmt: skip
    assert set(resolve(index, "app")) == {"app", "libb"}


def test_alternatives_prefer_a_package_already_chosen():
    index = index_of(stanza("app", depends="liba | libb"), stanza("liba"), stanza("libb"))
    assert set(resolve(index, "libb", "app")) == {"app", "libb"}
    assert resolve(index, "libb", "app")["libb"].required_by == ("app", "request")


def test_virtual_package_resolves_to_a_provider_by_priority_then_name():
    index = index_of(
        stanza("app", depends="mail-transport-agent"),
        stanza("exim4", provides="mail-transport-agent", priority="standard"),
        stanza("postfix", provides="mail-transport-agent", priority="optional"),
        stanza("aaa-mta", provides="mail-transport-agent", priority="extra"),
    )
    assert set(resolve(index, "app")) == {"app", "exim4"}
    # An already chosen provider wins over the priority order.
    assert set(resolve(index, "postfix", "app")) == {"app", "postfix"}


def test_requesting_a_virtual_name_needs_a_single_provider_as_in_apt():
    index = index_of(stanza("mawk", provides="awk"), stanza("gawk", provides="awk"), stanza("sh-impl", provides="sh"))
    with pytest.raises(CogbuildError) as error:
        resolve(index, "awk")
    assert str(error.value) == "Debian package 'awk' is virtual, provided by gawk, mawk; name one of them instead."
    assert set(resolve(index, "mawk", "awk")) == {"mawk"}  # already provided: nothing to choose
    assert set(resolve(index, "sh")) == {"sh-impl"}  # one provider: apt selects it


def test_versioned_dependency_needs_a_versioned_provides():
    index = index_of(
        stanza("app", depends="libapi (>= 2)"),
        stanza("old-impl", provides="libapi"),
        stanza("new-impl", provides="libapi (= 2.5)"),
    )
    assert set(resolve(index, "app")) == {"app", "new-impl"}
    only_unversioned = index_of(stanza("app", depends="libapi (>= 2)"), stanza("old-impl", provides="libapi"))
    with pytest.raises(CogbuildError, match="provided only without a matching version"):
        resolve(only_unversioned, "app")


def test_real_package_is_preferred_over_providers():
    index = index_of(stanza("app", depends="awk"), stanza("awk"), stanza("mawk", provides="awk", priority="required"))
    assert set(resolve(index, "app")) == {"app", "awk"}


@pytest.mark.parametrize(
    ("constraint", "satisfied"),
    [
        ("<< 2.0", False), ("<< 2.1", True), ("<= 2.0", True), ("<= 1:0.1", True), ("= 2.0", True),
        ("= 2.0-1", False), (">= 2.0", True), (">= 2.0~rc1", True), (">> 2.0", False), (">> 2.0~rc1", True),
    ],
)  # fmt: skip
def test_version_constraints_use_debian_ordering(constraint: str, satisfied: bool):
    index = index_of(stanza("app", depends=f"lib ({constraint})"), stanza("lib", "2.0"))
    if satisfied:
        assert "lib" in resolve(index, "app")
    else:
        with pytest.raises(CogbuildError) as error:
            resolve(index, "app")
        message = str(error.value)
        assert message.endswith(f"'lib ({constraint})', which testing (amd64) cannot satisfy: lib is at 2.0.")


def test_highest_version_across_archives_wins():
    index = PackageIndex.from_texts([
        text_of(stanza("lib", "1.0-1"), mirror="http://main.invalid"),
        text_of(stanza("lib", "1.0-1+deb12u1"), mirror="http://security.invalid"),
        text_of(stanza("lib", "1.0~beta"), mirror="http://updates.invalid"),
    ], "amd64")  # fmt: skip
    lib = resolve(index, "lib")["lib"]
    assert lib.version == "1.0-1+deb12u1"
    assert lib.url.startswith("http://security.invalid/pool/")
    assert index.available_versions("lib") == ["1.0~beta", "1.0-1", "1.0-1+deb12u1"]
    # An exact pin may choose an older version, as `apt-get install lib=1.0-1` does.
    pinned = resolve(index, "lib=1.0-1")["lib"]
    assert (pinned.version, pinned.url.split("/pool/")[0]) == ("1.0-1", "http://main.invalid")


def test_dependency_on_an_older_version_than_the_candidate_names_both():
    index = PackageIndex.from_texts([
        text_of(stanza("lib", "1.0-1"), stanza("app", depends="lib (= 1.0-1)")),
        text_of(stanza("lib", "1.0-2"), mirror="http://updates.invalid"),
    ], "amd64")  # fmt: skip
    with pytest.raises(CogbuildError, match=r"cannot satisfy: lib is at 1\.0-2 \(older, not chosen: 1\.0-1\)\.$"):
        resolve(index, "app")


def test_any_qualifier_needs_multi_arch_allowed_or_foreign():
    index = index_of(
        stanza("tool", depends="python3:any (>= 3.11)"),
        stanza("python3", "3.11.2-1", multi_arch="allowed"),
        stanza("helper", depends="perl:any"),
        stanza("perl", "5.36", multi_arch="foreign"),
        stanza("broken", depends="plainlib:any"),
        stanza("plainlib"),
    )
    assert set(resolve(index, "tool", "helper")) == {"tool", "python3", "helper", "perl"}
    with pytest.raises(CogbuildError, match=r"depends on 'plainlib:any'.*plainlib is at 1\.0 with Multi-Arch: no"):
        resolve(index, "broken")


def test_foreign_architecture_qualifier_is_not_satisfied_in_a_single_arch_image():
    index = index_of(stanza("app", depends="lib:i386 | lib:amd64"), stanza("lib"))
    assert set(resolve(index, "app")) == {"app", "lib"}
    with pytest.raises(CogbuildError, match="lib:i386"):
        resolve(index_of(stanza("app", depends="lib:i386"), stanza("lib")), "app")


def test_arch_all_packages_join_the_closure_and_other_arches_do_not():
    index = index_of(
        stanza("app", depends="data, lib"),
        stanza("data", arch="all"),
        stanza("lib", arch="arm64"),
        arch="amd64",
    )
    with pytest.raises(CogbuildError, match="no package is named or provides lib"):
        resolve(index, "app")
    arm = index_of(stanza("app", arch="arm64", depends="data, lib"), stanza("data", arch="all"),
                   stanza("lib", arch="arm64"), arch="arm64")  # fmt: skip
    closure = resolve(arm, "app", arch="arm64")
    assert set(closure) == {"app", "data", "lib"}
    assert closure["data"].filename == "data_1.0_all.deb"


def test_excluded_names_count_as_satisfied_but_are_not_installed():
    index = index_of(
        stanza("tzdata", depends="debconf (>= 0.5) | debconf-2.0"),
        stanza("debconf", provides="debconf-2.0", pre_depends="perl-base"),
        stanza("perl-base"),
    )
    assert set(resolve(index, "tzdata", exclude=["debconf", "debconf-2.0"])) == {"tzdata"}


def test_installed_packages_and_their_provides_are_not_returned_again():
    index = index_of(
        stanza("libc6", "2.36"),
        stanza("mawk", depends="libc6", provides="awk"),
        stanza("ffmpeg", depends="libc6 (>= 2.34), awk, libavcodec"),
        stanza("libavcodec", depends="libc6"),
    )
    base = list(resolve(index, "libc6", "mawk").values())
    closure = resolve(index, "ffmpeg", installed=base)
    assert set(closure) == {"ffmpeg", "libavcodec"}
    # An installed version too old for a dependency is upgraded by the new layer.
    old_libc = [Artifact("deb", "libc6", "2.31", "libc6_2.31_amd64.deb", "http://x/libc6.deb", "0" * 64, 1)]
    assert set(resolve(index, "ffmpeg", installed=old_libc)) == {"ffmpeg", "libavcodec", "libc6", "mawk"}


def test_requested_package_already_installed_returns_nothing():
    index = index_of(stanza("libc6", "2.36"))
    base = list(resolve(index, "libc6").values())
    assert resolve(index, "libc6", installed=base) == {}


def test_unknown_package_names_the_closest_match():
    index = index_of(stanza("python3.11"), stanza("libpython3.11-stdlib"), stanza("libsndfile1-dev"),
                     stanza("libsndfile1"), stanza("libsndfileextra"))  # fmt: skip
    with pytest.raises(CogbuildError, match=r"'libsndfile' is not .*; did you mean 'libsndfile1'\?$"):
        resolve(index, "libsndfile")
    with pytest.raises(CogbuildError) as error:
        resolve(index, "pyhton3.11")
    assert str(error.value) == "Debian package 'pyhton3.11' is not in testing (amd64); did you mean 'python3.11'?"
    with pytest.raises(CogbuildError, match=r"^Debian package 'zzz' is not in testing \(amd64\)\.$"):
        resolve(index, "zzz")
    with pytest.raises(CogbuildError, match=r"'libpython3' is not .*; did you mean 'libpython3\.11-stdlib'\?$"):
        resolve(index, "libpython3")


def test_pinned_request_and_its_error():
    index = index_of(stanza("lib", "2.0"))
    assert resolve(index, "lib=2.0")["lib"].version == "2.0"
    with pytest.raises(CogbuildError, match=r"'lib' has no version 1\.0 in testing \(amd64\); available: 2\.0\."):
        resolve(index, "lib=1.0")
    with pytest.raises(CogbuildError, match="is not a Debian package name"):
        resolve(index, "lib; rm -rf /")


def test_unsatisfiable_dependency_is_one_sentence_with_versions():
    index = index_of(stanza("python3.11", "3.11.2-6", depends="libpython3.11-stdlib (= 3.11.2-6)"),
                     stanza("libpython3.11-stdlib", "3.11.2-6+deb12u9"))  # fmt: skip
    with pytest.raises(CogbuildError) as error:
        resolve(index, "python3.11")
    assert str(error.value) == (
        "Debian package python3.11 3.11.2-6 depends on 'libpython3.11-stdlib (= 3.11.2-6)', which testing "
        "(amd64) cannot satisfy: libpython3.11-stdlib is at 3.11.2-6+deb12u9."
    )


def test_dependencies_are_followed_depth_first_like_apt():
    """deep's "libblas3 | libblas.so.3" is met before shallow's provider is reached, as in apt."""
    index = index_of(
        stanza("app", depends="middle, shallow"),
        stanza("middle", depends="deep"),
        stanza("deep", depends="libblas3 | libblas.so.3"),
        stanza("shallow", depends="libopenblas0"),
        stanza("libopenblas0", provides="libblas.so.3"),
        stanza("libblas3", provides="libblas.so.3"),
    )
    assert set(resolve(index, "app")) == {"app", "middle", "deep", "shallow", "libopenblas0", "libblas3"}
    # Requests are all marked before any dependency is followed.
    assert set(resolve(index, "libopenblas0", "deep")) == {"libopenblas0", "deep"}


def test_dependency_cycles_terminate_and_output_is_deterministic():
    index = index_of(stanza("aa", depends="bb"), stanza("bb", depends="cc"), stanza("cc", depends="dd | aa"),
                     stanza("dd"))  # fmt: skip
    first = resolve(index, "aa")
    assert set(first) == {"aa", "bb", "cc"}  # cc's "dd | aa" is met by aa, already chosen
    assert first["aa"].required_by == ("cc", "request")
    again = resolve(index, "aa")
    assert list(again.values()) == list(first.values())
    assert [x.required_by for x in again.values()] == [x.required_by for x in first.values()]


def test_conflicting_packages_in_one_closure_are_an_error():
    index = index_of(stanza("app", depends="liba, libb"), stanza("liba", conflicts="libb"), stanza("libb"))
    with pytest.raises(CogbuildError) as error:
        resolve(index, "app")
    assert str(error.value) == (
        "Debian packages liba 1.0 and libb 1.0 cannot be installed together: liba declares 'Conflicts: libb'."
    )


def test_breaks_honours_versions_and_virtual_names():
    newer = index_of(stanza("libnew", breaks="libold (<< 2)"), stanza("libold", "2.0"))
    assert set(resolve(newer, "libnew", "libold")) == {"libnew", "libold"}
    older = index_of(stanza("libnew", breaks="libold (<< 2)"), stanza("libold", "1.5"))
    with pytest.raises(CogbuildError, match=r"libnew declares 'Breaks: libold \(<< 2\)'"):
        resolve(older, "libnew", "libold")
    virtual = index_of(stanza("sendmail", provides="mail-transport-agent"),
                       stanza("exim4", provides="mail-transport-agent", conflicts="mail-transport-agent"))  # fmt: skip
    assert set(resolve(virtual, "exim4")) == {"exim4"}  # a package may conflict with what it provides itself
    with pytest.raises(CogbuildError, match=r"exim4 1\.0 and sendmail 1\.0 cannot be installed together"):
        resolve(virtual, "exim4", "sendmail")


def test_a_new_package_clashing_with_the_lower_layer_is_an_error():
    index = index_of(stanza("mawk"), stanza("gawk", conflicts="mawk"))
    base = list(resolve(index, "mawk").values())
    with pytest.raises(CogbuildError, match=r"gawk 1\.0 and mawk 1\.0 cannot be installed together"):
        resolve(index, "gawk", installed=base)


def test_index_parsing_keeps_continuation_lines_and_whitespace_paragraph_breaks():
    text = (
        "Package: app\nVersion: 1.0\nArchitecture: amd64\nDescription: long\n continued description\n"
        "Depends: liba,\n libb\nFilename: pool/app.deb\nSize: 1\nSHA256: " + "a" * 64 + "\n"
        " \t\n"  # a whitespace-only line also ends a paragraph
        "Package: liba\nVersion: 1.0\nArchitecture: all\nFilename: pool/liba.deb\nSize: 1\nSHA256: " + "b" * 64 + "\n"
        "\nPackage: libb\nVersion: 2.0\nArchitecture: amd64\nFilename: pool/libb.deb\nSize: 1\nSHA256: " + "c" * 64
    )
    index = index_of(text)
    assert sorted(index.candidates) == ["app", "liba", "libb"]
    assert set(resolve(index, "app")) == {"app", "liba", "libb"}


def test_index_fields_read_as_deb822_reads_them():
    # The focused parser must give python-debian's values for every field the resolver reads.
    text = (
        "# a comment line\n"
        "Package: app\r\nVersion : 1:2.0-1  \r\nArchitecture: amd64\r\nDescription: short\r\n long text\r\n"
        "Depends:\n liba (>= 1.0),\n libb:any | libc\t\nPre-Depends: libc6:any\nX-Unknown: skipped\n Depends: no\n"
        "provides: app-virtual (= 2.0)\nSHA256: " + "A" * 64 + "\nFilename: pool/app.deb\nSize: 12\n"
        "\n\n \n"
        "Package: liba\nVersion: 1.0\nArchitecture: all\nMulti-Arch: foreign\nPriority: required\n"
        "Conflicts: old-liba\nBreaks: app (<< 1.0)\n"
    )
    expected = [
        {name.lower(): paragraph[name] for name in index_module._FIELDS if name in paragraph}
        for paragraph in deb822.Deb822.iter_paragraphs(text, use_apt_pkg=False)
    ]
    assert list(index_module._paragraphs(text)) == expected
    assert expected[0]["depends"] == "\n liba (>= 1.0),\n libb:any | libc\t"  # the case that matters most


def test_the_scanned_index_answers_as_a_full_parse():
    # What the scan must find wherever deb822 allows it: a field name in any case, a paragraph that opens
    # the text or starts with Provides, "\r\n" line ends, comments, duplicates across and within indexes.
    texts = [
        text_of(
            "provides: mta,\n  mail-reader (= 2)\nPACKAGE: exim\nVersion: 4.0\nArchitecture: amd64\nFilename: e.deb\n"
            "Size: 1\nSHA256: " + "e" * 64 + "\n",
            "# a comment\r\nPackage: lib\r\nVersion: 1.0\r\nArchitecture: all\r\nProvides: libvirt\r\n"
            "Filename: l.deb\r\nSize: 2\r\nSHA256: " + "f" * 64 + "\r\n",
            stanza("lib", "0.9", provides="old-virtual"),
            stanza("lib", "1.1", arch="arm64", provides="arm-only"),
            stanza("nohash").replace("SHA256", "MD5sum"),
        ),
        text_of(stanza("lib", "1.0+deb12u1", provides="libvirt (= 1)"), stanza("exim", "3.9"), mirror="http://security.invalid"),
    ]
    index = PackageIndex.from_texts(texts, "amd64")
    assert assert_answers_as_a_full_parse(index, texts, "amd64") == 2
    assert index.candidates["lib"].version == "1.0+deb12u1"
    assert [p.name for p, _ in index.providers("mail-reader")] == ["exim"]
    assert index.providers("arm-only") == [] and index.providers("old-virtual") == []
    assert "nohash" not in index.candidates and "nohash" in index.names()
