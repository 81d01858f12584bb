"""Soak: 10,000 predictions mixing good and bad bodies, failing predictions, file outputs, cancels and
worker kills (bench/runtime/soak.py): every answer as expected, the server READY and its memory flat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[2] / "bench" / "runtime" / "soak.py"
PREDICTIONS = 10_000
RSS_GROWTH_BOUND_MIB = 16  # generous: a leak of one kilobyte per prediction would show 9 MiB


@pytest.mark.soak
def test_ten_thousand_predictions_leave_the_server_ready_and_its_memory_flat():
    done = subprocess.run([sys.executable, str(SOAK), "--predictions", str(PREDICTIONS), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    print(f"soak: {result}")  # the figures for the record (pytest -s)
    assert result["unexpected"] == []
    assert sum(result["counts"].values()) == PREDICTIONS
    assert set(result["counts"]) == {"good", "bad body", "failing", "file output", "cancel", "worker killed"}
    assert result["final_status"] == "READY"
    assert result["worker_restarts"] == result["counts"]["worker killed"]
    assert result["rss_end_mib"] - result["rss_after_warm_up_mib"] < RSS_GROWTH_BOUND_MIB, result
