"""A tiny signed Debian archive built on disk: real .debs (dpkg-deb), Packages.xz/.gz, a gpg-signed InRelease.

    key = SigningKey.generate(tmp)                       # temp GNUPGHOME, exported keyring for gpgv
    repo = FixtureRepo(tmp / "repo", key)
    repo.add("app", "1.0", depends="libfoo (>= 1.0)")
    repo.publish("testing")                             # dists/testing/{InRelease,main/binary-*/Packages*}
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from components import unavailable

ARCHES = ("amd64", "arm64")


def require(condition: bool, what: str) -> None:
    """Skip when a component is missing, except in CI (env CI set), where missing parts are failures."""
    if not condition:
        unavailable(f"{what} is not available")


def require_tools(*tools: str) -> None:
    for tool in tools:
        require(shutil.which(tool) is not None, f"the '{tool}' command")


@dataclass
class SigningKey:
    gnupghome: Path
    keyring: Path  # binary export, what gpgv --keyring takes

    faked_time: str | None = None  # gpg's --faked-system-time, for a key that expired long ago

    @classmethod
    def generate(
        cls, directory: Path, name: str = "cogbuild test archive", *, expired_since: str | None = None
    ) -> SigningKey:
        """A new ed25519 key; with expired_since ("20000101T000000"), one made then, valid for a day."""
        home = directory / "gnupg"
        home.mkdir(parents=True, mode=0o700)
        key = cls(home, directory / "archive-keyring.gpg", expired_since)
        expiry = "1d" if expired_since else "never"
        key._gpg("--quick-generate-key", f"{name} <archive@example.invalid>", "ed25519", "sign", expiry)
        key.keyring.write_bytes(key._gpg("--export"))
        return key

    def clearsign(self, text: bytes) -> bytes:
        return self._gpg("--clearsign", "--digest-algo", "SHA256", input=text)

    def close(self) -> None:
        """Stop the gpg-agent that gpg started for this home, so no daemon outlives the tests."""
        subprocess.run(["gpgconf", "--homedir", str(self.gnupghome), "--kill", "gpg-agent"], capture_output=True)

    def detach_sign(self, text: bytes) -> bytes:
        return self._gpg("--detach-sign", "--armor", "--digest-algo", "SHA256", input=text)

    def _gpg(self, *args: str, input: bytes | None = None) -> bytes:
        faked = ("--faked-system-time", self.faked_time) if self.faked_time else ()
        return _gpg(self.gnupghome, *faked, *args, input=input)


def _gpg(home: Path, *args: str, input: bytes | None = None) -> bytes:
    env = dict(os.environ, GNUPGHOME=str(home))
    command = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    return subprocess.run(command, input=input, env=env, check=True, capture_output=True).stdout


@dataclass
class FixturePackage:
    name: str
    version: str
    arch: str
    fields: dict[str, str]
    pool_path: str = ""


@dataclass
class FixtureRepo:
    root: Path
    key: SigningKey
    packages: dict[str, list[FixturePackage]] = field(default_factory=dict)  # suite -> packages

    def add(self, name: str, version: str, *, arch: str = "amd64", suite: str = "testing", **fields: str) -> None:
        """A package in `suite`; field keywords use underscores (pre_depends= → Pre-Depends)."""
        control = {key.replace("_", "-").title(): value for key, value in fields.items() if value}
        package = FixturePackage(name, version, arch, control)
        package.pool_path = self._build_deb(package)
        self.packages.setdefault(suite, []).append(package)

    def _build_deb(self, package: FixturePackage) -> str:
        tree = self.root / "build" / f"{package.name}_{package.version}_{package.arch}"
        (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (tree / "usr/share/doc" / package.name).mkdir(parents=True, exist_ok=True)
        (tree / "usr/share/doc" / package.name / "README").write_text(f"{package.name} {package.version}\n")
        control = {
            "Package": package.name,
            "Version": package.version,
            "Architecture": package.arch,
            "Maintainer": "cogbuild tests <tests@example.invalid>",
            **package.fields,
            "Description": f"fixture package {package.name}",
        }
        (tree / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
        pool_path = f"pool/main/{package.name[0]}/{package.name}/{package.name}_{package.version}_{package.arch}.deb"
        deb = self.root / pool_path
        deb.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(deb)],
            check=True, capture_output=True, env=dict(os.environ, SOURCE_DATE_EPOCH="0"),
        )  # fmt: skip
        return pool_path

    def deb_path(self, name: str, version: str, arch: str = "amd64", suite: str = "testing") -> Path:
        for package in self.packages[suite]:
            if (package.name, package.version, package.arch) == (name, version, arch):
                return self.root / package.pool_path
        raise KeyError(name)

    def publish(
        self,
        suite: str = "testing",
        *,
        codename: str | None = None,
        extra_release_fields: str = "",
        by_hash: bool = False,
        detached: bool = False,
    ) -> None:
        """Write dists/<suite>: Packages, .gz and .xz per arch, a Release listing them, InRelease signed.

        With detached=True, Release.gpg (a detached signature) replaces InRelease, as older archives do.
        """
        dists = self.root / "dists" / suite
        listed: list[tuple[str, bytes]] = []
        for arch in ARCHES:
            text = self._packages_text(suite, arch).encode()
            for suffix, data in (("", text), (".gz", gzip.compress(text, mtime=0)), (".xz", lzma.compress(text))):
                relative = f"main/binary-{arch}/Packages{suffix}"
                (dists / relative).parent.mkdir(parents=True, exist_ok=True)
                (dists / relative).write_bytes(data)
                listed.append((relative, data))
                if by_hash:
                    digest = hashlib.sha256(data).hexdigest()
                    hashed = dists / f"main/binary-{arch}/by-hash/SHA256/{digest}"
                    hashed.parent.mkdir(parents=True, exist_ok=True)
                    hashed.write_bytes(data)
        release = textwrap.dedent(
            f"""\
            Origin: cogbuild-tests
            Suite: {suite}
            Codename: {codename or suite}
            Architectures: {" ".join(ARCHES)}
            Components: main
            Acquire-By-Hash: {"yes" if by_hash else "no"}
            No-Support-for-Architecture-all: Packages
            """
        )
        release += extra_release_fields
        release += "SHA256:\n" + "".join(
            f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {path}\n" for path, data in listed
        )
        (dists / "Release").write_text(release)
        if detached:
            (dists / "Release.gpg").write_bytes(self.key.detach_sign(release.encode()))
        else:
            (dists / "InRelease").write_bytes(self.key.clearsign(release.encode()))

    def _packages_text(self, suite: str, arch: str) -> str:
        stanzas = []
        for package in sorted(self.packages.get(suite, []), key=lambda p: (p.name, p.version)):
            if package.arch not in (arch, "all"):
                continue
            deb = (self.root / package.pool_path).read_bytes()
            control = subprocess.run(
                ["dpkg-deb", "--field", str(self.root / package.pool_path)], check=True, capture_output=True, text=True
            ).stdout
            stanzas.append(
                control
                + f"Filename: {package.pool_path}\nSize: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\n"
            )
        return "\n".join(stanzas)
