"""Scratch directories: a build killed with SIGKILL cannot clean up, so the next one removes what it left,
and never a directory that a build still running uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cogbuild.cache import remove_scratch, scratch_dir

# A build-like process: makes its scratch directory, writes into it, says where, then works until killed.
HOLDER = """
import sys, time
from pathlib import Path
from cogbuild.cache import scratch_dir
directory = scratch_dir(Path(sys.argv[1]), "unpacked-")
(directory / "partial.deb").write_bytes(b"x" * 4096)
print(directory, flush=True)
time.sleep(600)
"""


def start_holder(cache_root: Path) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache_root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_a_killed_builds_scratch_goes_with_the_next_build_and_a_running_ones_stays(tmp_path: Path):
    killed, abandoned = start_holder(tmp_path)
    running, in_use = start_holder(tmp_path)
    try:
        killed.kill()  # SIGKILL: nothing of its own runs, its lock goes with it
        killed.wait()
        assert (abandoned / "partial.deb").is_file()
        mine = scratch_dir(tmp_path, "python-")
        assert not abandoned.exists() and not Path(f"{abandoned}.owner").exists()
        assert (in_use / "partial.deb").is_file()
        remove_scratch(mine)
        assert sorted(entry.name for entry in (tmp_path / "tmp").iterdir()) == [in_use.name, f"{in_use.name}.owner"]
    finally:
        running.kill()
        running.wait()
    remove_scratch(scratch_dir(tmp_path, "python-"))
    assert list((tmp_path / "tmp").iterdir()) == []  # the running one's, now that it is gone too


def test_a_directory_without_owner_file_goes_only_when_a_day_old(tmp_path: Path):
    older, recent = tmp_path / "tmp" / "unpacked-old", tmp_path / "tmp" / "unpacked-new"
    for directory in (older, recent):
        directory.mkdir(parents=True)
    day_ago = time.time() - 24 * 3600 - 60
    os.utime(older, (day_ago, day_ago))
    remove_scratch(scratch_dir(tmp_path, "python-"))
    assert sorted(entry.name for entry in (tmp_path / "tmp").iterdir()) == ["unpacked-new"]
