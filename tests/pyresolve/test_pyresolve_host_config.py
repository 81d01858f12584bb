"""The lock depends on the requirements and cogbuild alone: no pip configuration of the host reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogbuild.pyresolve import Target, export_requirements, resolve_requirements
from cogbuild.pyresolve.pip_runner import pip_environment

X86 = Target("3.11", "x86_64", "2.36")


def write_pip_conf(folder: Path, lines: list[str]) -> Path:
    """A pip.conf whose [global] section holds `lines`; a constraint file beside it caps helper below 2."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "constraints.txt").write_text("helper<2\n")
    conf = folder / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{line}\n" for line in lines).replace("@", str(folder)))
    return conf


@pytest.fixture
def host_with_site_config(tmp_path, monkeypatch):
    """A machine-wide pip.conf, as /etc/xdg/pip/pip.conf is here: a constraint, another index, no wheels."""
    xdg = tmp_path / "xdg"
    write_pip_conf(xdg / "pip", ["constraint = @/constraints.txt", "index-url = http://127.0.0.1:9/simple/",
                                 "only-binary = none", "no-binary = :all:"])
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(xdg))


@pytest.fixture
def host_with_env_config(tmp_path, monkeypatch):
    """PIP_CONFIG_FILE and PIP_* variables naming a constraint and a find-links directory of its own."""
    conf = write_pip_conf(tmp_path / "env-conf", ["constraint = @/constraints.txt"])
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_CONSTRAINT", str(conf.parent / "constraints.txt"))
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")


def locked_text(simple_url: str) -> str:
    return export_requirements(resolve_requirements(["purelib"], X86, index_url=simple_url))


def test_a_site_wide_pip_conf_does_not_change_the_lock(simple_url, host_with_site_config, monkeypatch):
    configured = locked_text(simple_url)
    monkeypatch.delenv("XDG_CONFIG_DIRS")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/nonexistent")  # and nothing from /etc either
    assert "helper==2.0" in configured, "the host's constraint helper<2 must not reach the lock"
    assert configured == locked_text(simple_url)


def test_pip_config_file_and_pip_variables_do_not_change_the_lock(simple_url, host_with_env_config, tmp_path,
                                                                  monkeypatch):
    configured = locked_text(simple_url)
    other = write_pip_conf(tmp_path / "other-host", ["extra-index-url = http://127.0.0.1:9/simple/"])
    monkeypatch.setenv("PIP_CONFIG_FILE", str(other))
    for name in ("PIP_CONSTRAINT", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name)
    assert "helper==2.0" in configured
    assert configured == locked_text(simple_url)


def test_pip_runs_with_no_configuration_file_and_no_pip_variables():
    env = pip_environment({"PATH": "/bin", "PIP_FIND_LINKS": "/opt/wheels", "pip_index_url": "x",
                           "PIP_CONFIG_FILE": "/etc/pip.conf", "COGBUILD_CPU_FIND_LINKS": "/wheels"})
    assert env == {"PATH": "/bin", "PIP_CONFIG_FILE": "/dev/null", "COGBUILD_CPU_FIND_LINKS": "/wheels"}
