"""The batch runner a Kubernetes Job runs in the image (`python -m cog.command.batch`): a real server started
by the runner, real predictions, results in input order, failures in their lines, shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cog.command.batch import InputsError, parse_jsonl, shard_of

from .conftest import MODELS, PYTHON


def run_batch(inputs: Path, predictor: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COG_PREDICTOR": predictor, "PYTHONUNBUFFERED": "1"}
    env.pop("JOB_COMPLETION_INDEX", None)
    return subprocess.run([PYTHON, "-m", "cog.command.batch", str(inputs), *args], cwd=MODELS, env=env,
                          capture_output=True, text=True, timeout=120)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_results_come_in_input_order_and_a_failure_stops_nothing(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    # The first sleeps longest, so with two in flight the second finishes first; the third is refused.
    inputs.write_text('{"seconds": 1.0, "tag": "a"}\n{"seconds": 0.01, "tag": "b"}\n\n{"seconds": "soon"}\n'
                      '{"seconds": 0.01, "tag": "c"}\n')
    done = run_batch(inputs, "predict.py:AsyncSlow", "--concurrency", "2")
    assert done.returncode == 3, done.stderr
    results = lines(done.stdout)
    assert [r["line"] for r in results] == [1, 2, 4, 5]
    assert [r["status"] for r in results] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert [r["output"] for r in results] == ["done a", "done b", None, "done c"]
    assert 'invalid input "seconds"' in results[2]["error"]
    assert all(r["id"] for i, r in enumerate(results) if i != 2)
    assert "1 of 4 predictions failed" in done.stderr


def test_a_predictor_error_is_the_lines_error(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"message": "first"}\n{"message": "second"}\n')
    done = run_batch(inputs, "predict.py:Fails")
    assert done.returncode == 3
    assert [(r["status"], r["error"]) for r in lines(done.stdout)] == [("failed", "first"), ("failed", "second")]


def test_each_shard_runs_its_own_inputs(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"seconds": 0, "tag": tag}) + "\n" for tag in "abcde"))
    first = run_batch(inputs, "predict.py:AsyncSlow", "--shard", "0", "--shards", "2")
    second = run_batch(inputs, "predict.py:AsyncSlow", "--shard", "1", "--shards", "2")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert [r["output"] for r in lines(first.stdout)] == ["done a", "done c", "done e"]
    assert [r["line"] for r in lines(second.stdout)] == [2, 4]


def test_output_file(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"seconds": 0}\n')
    done = run_batch(inputs, "predict.py:AsyncSlow", "--output", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0 and done.stdout == ""
    assert lines((tmp_path / "out.jsonl").read_text())[0]["output"] == "done x"


def test_sigterm_stops_the_runner_and_its_server(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"seconds": 60}\n')
    env = {**os.environ, "COG_PREDICTOR": "predict.py:Slow", "COG_SHUTDOWN_GRACE": "0.5"}
    runner = subprocess.Popen([PYTHON, "-m", "cog.command.batch", str(inputs)], cwd=MODELS, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = _wait_for_child(runner.pid)
        _wait_busy(server)
        runner.terminate()
        assert runner.wait(30) == 128 + signal.SIGTERM
        assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text().split()[2]
    finally:
        runner.kill()
        runner.communicate()


def _wait_for_child(pid: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the runner started no server")


def _wait_busy(server_pid: int) -> None:
    """Until the server (found by its listening port) answers BUSY: the prediction runs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for port in _listening_ports(server_pid):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health-check").json()["status"] == "BUSY":
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise AssertionError("the prediction never started")


def _listening_ports(pid: int) -> list[int]:
    inodes = {target[8:-1] for target in map(_fd_target, _fds(pid)) if target.startswith("socket:")}
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            ports.append(int(fields[1].split(":")[1], 16))
    return ports


def _fds(pid: int) -> list[str]:
    try:
        return [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except FileNotFoundError:  # the process is gone
        return []


def _fd_target(path: str) -> str:
    """What a descriptor points at, or "" when the process closed it meanwhile (it is starting up)."""
    try:
        return os.readlink(path)
    except FileNotFoundError:
        return ""


def test_a_model_that_cannot_start_exits_1_with_its_logs(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("{}\n")
    done = run_batch(inputs, "predict.py:SetupFails")
    assert done.returncode == 1 and done.stdout == ""
    assert "SETUP_FAILED" in done.stderr.splitlines()[-1]


def test_a_bad_inputs_file_exits_2_naming_the_line(tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"seconds": 0}\n{"seconds": 0,}\n')
    done = run_batch(inputs, "predict.py:AsyncSlow")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"cog: error: {inputs} line 2 is not JSON")


@pytest.mark.parametrize("text, problem", [
    ('{"a": 1}\n[1, 2]\n', "in.jsonl line 2 is a JSON list, not an object of inputs"),
    ('"text"\n', "in.jsonl line 1 is a JSON str, not an object of inputs"),
    ("\n  \n", "in.jsonl holds no inputs (one JSON object a line)"),
])
def test_parse_jsonl_names_the_bad_line(text, problem):
    with pytest.raises(InputsError) as caught:
        parse_jsonl(text, "in.jsonl")
    assert str(caught.value) == problem


def test_blank_lines_keep_the_numbers_of_the_file_and_shards_split_evenly():
    items = parse_jsonl('{"n": 1}\n\n{"n": 2}\n{"n": 3}\n', "in.jsonl")
    assert [(i.line, i.input) for i in items] == [(1, {"n": 1}), (3, {"n": 2}), (4, {"n": 3})]
    assert [i.line for i in shard_of(items, 0, 2)] == [1, 4]
    assert [i.line for i in shard_of(items, 1, 2)] == [3]
