"""Start-up stays fast: each command imports only what it needs (issue 15; bench/cli/bench_startup.py times it).

The real CLI runs in a subprocess and reports the modules it loaded; a heavy module that a command does not
need (an HTTP client, a schema validator, a terminal renderer, Debian's parsers) fails the test, so an
innocent top-level import cannot slowly bring back half a second of start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cogbuild.cli import COMMAND_NAMES, SUMMARIES, cli
from fixtures_lock import model_with_empty_lock

# Loaded by nothing that only reads files or talks to a registry.
NEVER_AT_START = {"jsonschema", "httpx", "rich", "debian", "aiohttp", "pip", "piptools"}
BUDGETS = {
    "--help": NEVER_AT_START | {"cogbuild.commands", "yaml", "requests", "zstandard", "pathspec", "cogbuild.fast_path"},
    # Answered before click loads (fast_path.py): neither click nor the CLI's modules.
    "lock --check": NEVER_AT_START | {"requests", "zstandard", "pathspec", "installer", "concurrent.futures",
                                      "importlib.resources", "cogbuild.registry", "cogbuild.cache",
                                      "cogbuild.lockdiff", "click", "cogbuild.cli", "cogbuild.commands",
                                      "cogbuild.ui", "difflib", "http.client", "email", "ssl", "socket",
                                      "tempfile", "subprocess", "platform", "random", "shutil"},
    # Signing (cryptography, nacl) and provenance load only with --sign-key.
    "push": NEVER_AT_START | {"cryptography", "nacl", "cogbuild.signing", "cogbuild.provenance"},
}
# Issue 15: an unchanged image is only asked about (registry/light.py); nothing parses cog.yaml or builds.
BUDGETS["push unchanged"] = BUDGETS["push"] | {
    "requests", "urllib3", "yaml", "tomli_w", "zstandard", "pathspec", "concurrent.futures", "cogbuild.cache",
    "cogbuild.config", "cogbuild.project", "cogbuild.lock", "cogbuild.build", "cogbuild.plan", "cogbuild.shared_cache",
    "cogbuild.commands.build", "cogbuild.layers.tarball", "cogbuild.layers.tree", "cogbuild.layers.code",
    "cogbuild.registry.client", "cogbuild.registry.remote", "cogbuild.registry.transfer",
    "cogbuild.registry.referrers", "cogbuild.lock_artifacts",
    # Answered before click loads (fast_path.py): neither click nor the CLI's modules.
    "click", "cogbuild.cli", "cogbuild.commands", "cogbuild.ui",
    # registry/wire.py speaks HTTP/1.1 itself (http.client loads the email package); ssl only for https,
    # and the IDNA codec not at all for an ASCII host name. Nothing is written: no tempfile, no subprocess.
    "http.client", "email", "ssl", "encodings.idna", "tempfile", "subprocess", "platform", "random",
}

REPORT_MODULES = """
import json, sys
from cogbuild.__main__ import main
try:
    main()
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded_modules(args: list[str], cwd: Path, exit_code: int = 0, env: dict[str, str] | None = None) -> set[str]:
    done = subprocess.run([sys.executable, "-c", REPORT_MODULES, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == exit_code, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def over_budget(modules: set[str], forbidden: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_help_loads_no_command_and_no_third_party_client(tmp_path):
    modules = loaded_modules(["--help"], tmp_path)
    assert "click" in modules  # the probe saw the CLI run
    assert over_budget(modules, BUDGETS["--help"]) == []


def test_lock_check_on_a_current_lock_loads_no_network_client(tmp_path):
    modules = loaded_modules(["lock", "--check"], model_with_empty_lock(tmp_path))
    assert "cogbuild.fast_path" in modules and "yaml" in modules
    assert over_budget(modules, BUDGETS["lock --check"]) == []


def test_push_loads_no_schema_validator_terminal_renderer_or_debian_parser(pushed_model):
    (pushed_model.model / "helper.py").write_text("CHANGED = True\n")  # so the image is built and pushed
    modules = loaded_modules(["push", pushed_model.ref], pushed_model.model, env=pushed_model.env)
    assert "cogbuild.build" in modules and "requests" in modules
    assert over_budget(modules, BUDGETS["push"]) == []


def test_an_unchanged_push_loads_no_parser_build_module_or_upload_client(pushed_model):
    modules = loaded_modules(["push", pushed_model.ref], pushed_model.model, env=pushed_model.env)
    assert "cogbuild.push_record" in modules and "cogbuild.registry.light" in modules
    assert over_budget(modules, BUDGETS["push unchanged"]) == []


def test_the_budget_check_catches_a_heavy_import(tmp_path):
    assert over_budget({"jsonschema.validators", "click"}, BUDGETS["push"]) == ["jsonschema.validators"]


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_help_summaries_are_the_commands_own_first_sentence(name):
    command = cli.get_command(None, name)
    first_paragraph = " ".join(command.help.split("\n\n")[0].split())
    assert SUMMARIES[name] == first_paragraph


FREEZE_REPORT = """
import gc, sys
from cogbuild.__main__ import main
try:
    main()
finally:
    print(gc.get_freeze_count(), file=sys.stderr)
"""


@pytest.mark.parametrize("args, exit_code", [(["--help"], 0), (["lock", "--check"], 0), (["no-such-command"], 2)])
def test_the_cli_leaves_its_objects_out_of_the_collection_at_exit(tmp_path, args, exit_code):
    """Frozen, they cost the collector's passes nothing as the interpreter exits (20 ms of --help)."""
    done = subprocess.run([sys.executable, "-c", FREEZE_REPORT, *args], cwd=model_with_empty_lock(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_code, done.stderr
    assert int(done.stderr.strip().splitlines()[-1]) > 10_000
