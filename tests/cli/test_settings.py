"""One Settings object read once at the CLI (issue #14): no other module of cogbuild, layers or registry
reads the environment, and what the environment says reaches the library as values."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cogbuild.errors import UsageError
from cogbuild.resolve import LockSources
from cogbuild.settings import DEFAULT_DEBIAN_SNAPSHOT, Settings

REPO = Path(__file__).resolve().parents[2]
# Modules that may still read the environment, each with why.
ALLOWED_READERS = {
    "cogbuild/settings.py": "Settings.from_environ and process_environment: the readers",
    "registry/auth.py": "DOCKER_CONFIG is docker's own convention for its credentials, read as docker reads it",
}
# Calls that read the environment: os.environ / os.getenv / os.environb, and the settings' own readers
# (called from the CLI's group only).
ENVIRONMENT_NAMES = {"environ", "getenv", "environb", "read_environment"}


def environment_reads(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ENVIRONMENT_NAMES and isinstance(node.ctx, ast.Load):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(a.name in ENVIRONMENT_NAMES for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_the_settings_module_reads_the_environment():
    found = {}
    for folder in ("cogbuild", "layers", "registry"):
        for path in sorted((REPO / folder).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            # The one call of each entry point: the click group (cli.py), and the answers before it (fast_path.py).
            if name in ALLOWED_READERS or name in ("cogbuild/cli.py", "cogbuild/fast_path.py"):
                continue
            if lines := environment_reads(path):
                found[name] = lines
    assert found == {}


def test_the_check_sees_each_way_of_reading(tmp_path):
    module = tmp_path / "reader.py"
    module.write_text("import os\nfrom os import environ\na = os.environ.get('X')\nb = os.getenv('Y')\n"
                      "c = environ['Z']\nd = read_environment()\nkey = 'environ'\n")
    assert environment_reads(module) == [2, 3, 4, 5, 6]


def test_the_cli_reads_settings_once_in_its_group():
    tree = ast.parse((REPO / "cogbuild" / "cli.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES]
    assert [node.attr for node in calls] == ["read_environment"]


def test_paths_follow_cogbuild_variables_then_xdg_then_home():
    home = {"HOME": "/home/u"}
    assert Settings.from_environ(home).cache_root == Path("/home/u/.cache/cogbuild")
    assert Settings.from_environ(home).store_root == Path("/home/u/.local/share/cogbuild/store")
    xdg = Settings.from_environ({**home, "XDG_CACHE_HOME": "/x/c", "XDG_DATA_HOME": "/x/d"})
    assert (xdg.cache_root, xdg.store_root) == (Path("/x/c/cogbuild"), Path("/x/d/cogbuild/store"))
    own = Settings.from_environ({**home, "XDG_CACHE_HOME": "/x/c", "COGBUILD_CACHE": "/c", "COGBUILD_STORE": "/s"})
    assert (own.cache_root, own.store_root) == (Path("/c"), Path("/s"))


@pytest.mark.parametrize("value, base", [(None, DEFAULT_DEBIAN_SNAPSHOT), ("http://127.0.0.1:1/", "http://127.0.0.1:1"),
                                         ("off", None), ("", None)])
def test_debian_snapshot_base(value, base):
    environ = {} if value is None else {"COGBUILD_DEBIAN_SNAPSHOT": value}
    assert Settings.from_environ(environ).debian_snapshot == base


def test_switches_and_secrets():
    default = Settings.from_environ({})
    assert (default.pip_proxy, default.debian_check_valid_until, default.debug) == (True, True, False)
    assert (default.sign_password, default.verify_key, default.cache_repo) == (None, None, None)
    changed = Settings.from_environ({"COGBUILD_PIP_PROXY": "0", "COGBUILD_DEBIAN_IGNORE_VALID_UNTIL": "yes",
                                     "COGBUILD_DEBUG": "1", "COSIGN_PASSWORD": "theirs",
                                     "COGBUILD_VERIFY_KEY": "k.pub", "COGBUILD_CACHE_REPO": "r.example/c"})
    assert (changed.pip_proxy, changed.debian_check_valid_until, changed.debug) == (False, False, True)
    assert (changed.sign_password, changed.verify_key, changed.cache_repo) == ("theirs", Path("k.pub"), "r.example/c")
    assert Settings.from_environ({"COGBUILD_SIGN_PASSWORD": "", "COSIGN_PASSWORD": "x"}).sign_password == ""


def test_lock_sources_carry_the_settings():
    sources = LockSources.from_settings(Settings.from_environ({
        "COGBUILD_PIP_PROXY": "0", "COGBUILD_DEBIAN_IGNORE_VALID_UNTIL": "1",
        "COGBUILD_PYTHON_PROVIDER": " /m.json "}))
    assert (sources.pip_proxy, sources.debian.check_valid_until, sources.python_manifest) == (False, False, "/m.json")
    assert LockSources(Path("/c")) == LockSources.from_settings(Settings.from_environ({"COGBUILD_CACHE": "/c"}))


def test_a_bad_timeout_fails_only_when_asked_for():
    read = Settings.from_environ({"COGBUILD_READY_TIMEOUT": "soon"})  # --help and lock never ask
    with pytest.raises(UsageError, match="^COGBUILD_READY_TIMEOUT must be a positive number of seconds, not 'soon'$"):
        read.ready_timeout()
    assert Settings.from_environ({"COGBUILD_READY_TIMEOUT": "2.5"}).ready_timeout() == 2.5


def test_a_runtime_not_among_the_choices_names_the_variable():
    assert Settings.from_environ({}).runtime_choice(("podman", "runc")) is None
    assert Settings.from_environ({"COGBUILD_RUNTIME": "runc"}).runtime_choice(("podman", "runc")) == "runc"
    with pytest.raises(UsageError, match="^COGBUILD_RUNTIME must be one of podman, runc, not 'lxc'$"):
        Settings.from_environ({"COGBUILD_RUNTIME": "lxc"}).runtime_choice(("podman", "runc"))
