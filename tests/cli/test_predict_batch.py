"""`cogbuild predict DIR|IMAGE --batch inputs.jsonl -o outputs.jsonl`: the model starts once, inputs run up to
its concurrency.max at a time, one result line per input in input order, failures reported in their lines
without stopping the others; a bad inputs file is one sentence naming its line, before anything starts.
(The image case in podman is in test_cli_images.py, beside the image it builds.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import cogbuild, isolated_env, one_line_error
from crafted import model_image_layout
from fixtures_models import write_model

MODEL = '''\
import asyncio

from cog import BasePredictor

in_flight = peak = 0


class Predictor(BasePredictor):
    async def predict(self, text: str, seconds: float = 0) -> str:
        global in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(seconds)
            if text == "bad":
                raise ValueError("cannot handle bad")
            return f"{text.upper()} peak={peak}"
        finally:
            in_flight -= 1
'''


@pytest.fixture
def model(tmp_path) -> Path:
    return write_model(tmp_path / "model", MODEL, "concurrency:\n  max: 2\n")


def test_a_batch_runs_two_at_a_time_in_input_order_and_counts_its_failures(tmp_path, model):
    (tmp_path / "inputs.jsonl").write_text(
        '{"text": "a", "seconds": 1}\n{"text": "b"}\n\n{"text": "bad"}\n{"text": "c", "seconds": 0.2}\n'
        '{"text": "d"}\n')
    run = cogbuild(["predict", str(model), "--batch", "inputs.jsonl", "-o", "outputs.jsonl"], tmp_path,
                   isolated_env(tmp_path))
    assert run.code == 1
    assert one_line_error(run, model_logs=True) == "1 of 5 predictions failed; their errors are in their lines of " \
                                                   "outputs.jsonl"
    results = [json.loads(line) for line in (tmp_path / "outputs.jsonl").read_text().splitlines()]
    assert [r["line"] for r in results] == [1, 2, 4, 5, 6]
    assert [r["status"] for r in results] == ["succeeded", "succeeded", "failed", "succeeded", "succeeded"]
    assert results[1]["output"] == "B peak=2"  # b ran while a slept
    assert all(int(r["output"].rpartition("=")[2]) <= 2 for r in results if r["output"])  # never above max
    assert "cannot handle bad" in results[2]["error"] and results[2]["output"] is None
    assert all(r["id"] for r in results)


def test_results_go_to_stdout_without_o(tmp_path, model):
    (tmp_path / "inputs.jsonl").write_text('{"text": "x"}\n')
    run = cogbuild(["predict", str(model), "--batch", "inputs.jsonl"], tmp_path, isolated_env(tmp_path))
    assert run.code == 0, run.err
    assert json.loads(run.out)["output"] == "X peak=1"


@pytest.mark.parametrize("text, problem", [
    ('{"text": "a"}\n{"text": }\n', "inputs.jsonl line 2 is not JSON"),
    ('{"text": "a"}\n\n3\n', "inputs.jsonl line 3 is a JSON int, not an object of inputs"),
    ('{"seconds": 1}\n', 'inputs.jsonl line 1: missing required input "text"'),
    ('{"text": "a", "seconds": "soon"}\n', 'inputs.jsonl line 1: '),
    ('{"text": "@absent.txt"}\n', "inputs.jsonl line 1: "),
])
def test_a_bad_line_stops_the_batch_before_the_model_starts(tmp_path, model, text, problem):
    (tmp_path / "inputs.jsonl").write_text(text)
    run = cogbuild(["predict", str(model), "--batch", "inputs.jsonl", "-o", "outputs.jsonl"], tmp_path,
                   isolated_env(tmp_path))
    assert run.code == 2
    assert one_line_error(run).startswith(problem)
    assert "starting" not in run.err and not (tmp_path / "outputs.jsonl").exists()


def test_a_bad_line_for_an_image_is_found_from_its_schema_before_it_runs(tmp_path):
    for name, data in model_image_layout().items():
        (tmp_path / "image" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "image" / name).write_bytes(data)
    (tmp_path / "inputs.jsonl").write_text('{"text": "a"}\n{"text": "b", "count": "two"}\n')
    run = cogbuild(["predict", "oci:image", "--batch", "inputs.jsonl"], tmp_path, isolated_env(tmp_path))
    assert run.code == 2
    assert one_line_error(run).startswith("inputs.jsonl line 2: ")


def test_batch_takes_no_other_inputs(tmp_path, model):
    (tmp_path / "inputs.jsonl").write_text('{"text": "x"}\n')
    run = cogbuild(["predict", str(model), "--batch", "inputs.jsonl", "-i", "text=y"], tmp_path, isolated_env(tmp_path))
    assert run.code == 2
    assert one_line_error(run) == "--batch takes every input from its file; drop -i and --json"
