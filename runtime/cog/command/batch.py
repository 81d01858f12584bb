"""Run predictions over a JSONL file of inputs: one JSON object a line in, one JSON result a line out.

    python -m cog.command.batch INPUTS.jsonl [--shard I] [--shards N] [--concurrency N] [--output FILE]

Inside an image (a Kubernetes Indexed Job runs it in each pod): starts the model's server on loopback,
waits for its setup(), posts this shard's inputs (every Nth, starting at the Ith; I defaults to
$JOB_COMPLETION_INDEX), writes one result line per input in input order, and stops the server.
Exit codes: 0 every prediction succeeded; 3 some failed (each is in its line); 2 the inputs file is bad;
1 the model could not start. `cogbuild predict IMAGE --batch` calls `run_batch` on a server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import aiohttp

from ..server.status import Health, PredictionStatus

SOME_FAILED = 3
BUSY_RETRY_SECONDS = 0.05  # a 409 (every slot busy) is retried after this pause
READY_STATES = (Health.READY, Health.BUSY)
FAILED_STATES = (Health.SETUP_FAILED, Health.DEFUNCT)


class InputsError(ValueError):
    """The inputs file is not JSONL of objects; the message names the file and line."""


@dataclass
class BatchInput:
    line: int  # 1-based line number in the file, so a result points back at its input
    input: Dict[str, Any]


def parse_jsonl(text: str, name: str) -> List[BatchInput]:
    """Each non-blank line of `text` must be one JSON object (a prediction's input)."""
    items = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise InputsError(f"{name} line {number} is not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise InputsError(f"{name} line {number} is a JSON {type(value).__name__}, not an object of inputs")
        items.append(BatchInput(number, value))
    if not items:
        raise InputsError(f"{name} holds no inputs (one JSON object a line)")
    return items


def result_line(item: BatchInput, body: Dict[str, Any]) -> Dict[str, Any]:
    return {"line": item.line, "id": body.get("id"), "status": body.get("status") or PredictionStatus.FAILED,
            "output": body.get("output"), "error": body.get("error")}


def failure(item: BatchInput, error: str) -> Dict[str, Any]:
    return {"line": item.line, "id": None, "status": PredictionStatus.FAILED, "output": None, "error": error}


async def run_batch(base_url: str, items: List[BatchInput], concurrency: int,
                    emit: Callable[[Dict[str, Any]], None], endpoint: str = "predictions") -> int:
    """POST every input to `base_url`, at most `concurrency` at once; `emit` each result in input order.

    A failing prediction is reported in its line and the others go on. Returns how many failed."""
    limit = asyncio.Semaphore(max(1, concurrency))
    done: Dict[int, Dict[str, Any]] = {}
    next_to_emit = 0
    failed = 0

    async def one(position: int, item: BatchInput) -> None:
        nonlocal next_to_emit, failed
        async with limit:
            result = await _predict(session, f"{base_url}/{endpoint}", item)
        failed += result["status"] != PredictionStatus.SUCCEEDED
        done[position] = result
        while next_to_emit in done:  # results finish in any order; lines go out in input order
            emit(done.pop(next_to_emit))
            next_to_emit += 1

    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(position, item) for position, item in enumerate(items)))
    return failed


async def _predict(session: aiohttp.ClientSession, url: str, item: BatchInput) -> Dict[str, Any]:
    while True:
        try:
            async with session.post(url, json={"input": item.input}) as response:
                if response.status == 409:  # every slot busy (the server has fewer than we send)
                    await asyncio.sleep(BUSY_RETRY_SECONDS)
                    continue
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    return failure(item, f"the server answered {response.status} without JSON")
        except aiohttp.ClientError as exc:
            return failure(item, f"the request failed: {exc}")
        if response.status == 422:
            return failure(item, invalid_input_message(body))
        if response.status >= 400 and not (isinstance(body, dict) and "status" in body):
            detail = body.get("detail") if isinstance(body, dict) else body
            return failure(item, f"the server answered {response.status}: {detail}")
        return result_line(item, body)


def invalid_input_message(body: Any) -> str:
    """A 422 answer as one sentence: `invalid input "count": …; invalid input "text": …`."""
    details = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(details, list) or not details:
        return "the model rejected the input"
    return "; ".join(f'invalid input "{".".join(map(str, d.get("loc", [])[2:])) or "input"}": {d.get("msg")}'
                     for d in details)


# ---------------------------------------------------------------- the runner inside an image


def shard_of(items: List[BatchInput], shard: int, shards: int) -> List[BatchInput]:
    """Every `shards`-th input starting at `shard`: shards of near-equal size, each in input order."""
    return items[shard::shards]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _health(base_url: str) -> Optional[str]:
    try:
        with urllib.request.urlopen(f"{base_url}/health-check", timeout=10) as response:
            return json.loads(response.read()).get("status")
    except (OSError, ValueError):
        return None  # not listening yet


def _start_server(log: Any) -> tuple:
    port = _free_port()
    # The image's own server, on the interpreter that runs this (the runtime's venv, isolated).
    process = subprocess.Popen([sys.executable, "-I", "-u", "-m", "cog.server.http", "--host", "127.0.0.1",
                                "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def _wait_ready(process: subprocess.Popen, base_url: str) -> Optional[str]:
    """None once setup() is done, else why the model cannot serve."""
    while True:
        if process.poll() is not None:
            return f"the model server exited with code {process.returncode} before it was ready"
        status = _health(base_url)
        if status in READY_STATES:
            return None
        if status in FAILED_STATES:
            return f"the model server reports {status}"
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _arguments(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cog.command.batch", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", help="JSONL file: one JSON object of inputs a line")
    parser.add_argument("--shard", type=int, default=int(os.environ.get("JOB_COMPLETION_INDEX", "0")),
                        help="which shard to run (default: $JOB_COMPLETION_INDEX, else 0)")
    parser.add_argument("--shards", type=int, default=1, help="how many shards the inputs are split into")
    parser.add_argument("--concurrency", type=int, default=1, help="predictions in flight at once")
    parser.add_argument("--output", default="-", help="where the result lines go (default: stdout)")
    args = parser.parse_args(argv)
    if not 0 <= args.shard < args.shards:
        parser.error(f"--shard {args.shard} is not in 0..{args.shards - 1}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = _arguments(argv)
    try:
        with open(args.inputs, encoding="utf-8") as file:
            items = shard_of(parse_jsonl(file.read(), args.inputs), args.shard, args.shards)
    except (OSError, UnicodeDecodeError, InputsError) as exc:
        print(f"cog: error: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    # As a container's PID 1 a signal without a handler is ignored: exit, and stop the server on the way out
    # (it lets in-flight predictions finish within its grace).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryFile() as log:
        process, base_url = _start_server(log)
        try:
            problem = _wait_ready(process, base_url)
            if problem is not None:
                log.seek(0)
                sys.stderr.write(log.read().decode("utf-8", "replace")[-5000:])
                print(f"cog: error: {problem}", file=sys.stderr)
                return 1

            def emit(result: Dict[str, Any]) -> None:
                out.write(json.dumps(result, separators=(",", ":")) + "\n")
                out.flush()

            failed = asyncio.run(run_batch(base_url, items, args.concurrency, emit))
        finally:
            _stop(process)
            if out is not sys.stdout:
                out.close()
    if failed:
        print(f"cog: {failed} of {len(items)} predictions failed", file=sys.stderr)
        return SOME_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
