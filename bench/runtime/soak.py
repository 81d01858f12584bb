"""Soak: many predictions against one server, mixing good and bad request bodies, failing predictions,
file outputs, cancels and worker kills; reports every unexpected answer and the server's RSS.

    .venv/bin/python bench/runtime/soak.py [--predictions 10000] [--json]
    .venv/bin/python bench/runtime/soak.py --quick    # a few predictions: checks the script still runs

The server process (the parent; its worker is replaced after each kill) is measured from /proc after a
warm-up and at the end. tests/runtime/test_server_soak.py runs this script and asserts on its --json output.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


PREDICTOR = """\
import os
import tempfile
import time

from cog import BasePredictor, Input, Path, Secret


class Predictor(BasePredictor):
    def predict(self, mode: str = Input(default="ok", choices=["ok", "fail", "file", "sleep", "exit"]),
                text: str = "x", key: Secret = Input(default=None)) -> object:
        if key is not None:
            print(f"using {key.get_secret_value()}")
        if mode == "fail":
            raise ValueError("asked to fail")
        if mode == "file":
            path = os.path.join(tempfile.mkdtemp(), "out.txt")
            with open(path, "w") as handle:
                handle.write(text)
            return Path(path)
        if mode == "sleep":
            time.sleep(30)
        if mode == "exit":
            os._exit(3)
        return text
"""

# Bodies the server must refuse with a 4xx, whatever they hold.
BAD_BODIES = [
    b"{not json", b"[1, 2]", b'{"input": [1]}', b'{"input": {"mode": "nope"}}', b'{"input": {"text": 5}}',
    b'{"input": {"extra": 1}}', b'{"webhook_events_filter": [["start"]]}', b'{"id": ["x"]}',
    b'{"webhook": "http://[::1/"}', b'{"webhook": "http://127.0.0.1:99999/"}', b'{"output_file_prefix": "ftp://x/"}',
    b'{"webhook": "http://169.254.169.254/latest"}', b'{"context": {"a": 1}}', b"\xff\xfe",
    b'{"input": {"text": "a"}, "id": ' + b"1" * 5000 + b"}",
]
WARM_UP = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def worker_pid(server_pid: int) -> int:
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return int(children[0])


class Client:
    """A keep-alive HTTP/1.1 connection answering (status, JSON body): lighter than any client library,
    so the soak measures the server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: object = None, raw: bytes | None = None) -> tuple[int, object]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            text = response.read()
        except (http.client.HTTPException, OSError) as exc:
            self.connection.close()  # the next request opens a new connection
            raise RuntimeError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from None
        return response.status, json.loads(text) if text else None

    def status(self) -> str:
        return self.request("GET", "/health-check")[1]["status"]


class Soak:
    def __init__(self, port: int, server_pid: int) -> None:
        self.client, self.other = Client(port), Client(port)
        self.background = concurrent.futures.ThreadPoolExecutor(1)
        self.server_pid = server_pid
        self.counts: dict[str, int] = {}
        self.unexpected: list[str] = []

    def check(self, kind: str, ok: bool, what: object) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if not ok and len(self.unexpected) < 20:
            self.unexpected.append(f"{kind}: {str(what)[:300]}")

    def predict(self, body: dict, client: Client | None = None) -> tuple[int, dict]:
        return (client or self.client).request("POST", "/predictions", body)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while self.client.status() != "READY":
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become READY again")
            time.sleep(0.01)

    def one(self, i: int) -> None:
        if i % 1000 == 999:
            self.kill(external=i % 2000 == 1999)
        elif i % 100 == 50:
            self.cancel(i)
        elif i % 10 == 3:
            status, body = self.predict({"input": {"mode": "fail"}})
            self.check("failing", status == 200 and body["status"] == "failed", body)
        elif i % 10 == 5:
            status, body = self.predict({"input": {"mode": "file", "text": f"file {i}"}})
            self.check("file output", status == 200 and body["output"] == _data_uri(f"file {i}"), body)
        elif i % 10 in (1, 7):
            raw = BAD_BODIES[i % len(BAD_BODIES)]
            status, answer = self.client.request("POST", "/predictions", raw=raw)
            self.check("bad body", 400 <= status < 500, (raw[:60], status, answer))
        else:
            secret = f"secret-{i}"
            status, body = self.predict({"input": {"text": f"t{i}", "key": secret}})
            self.check("good", status == 200 and body["output"] == f"t{i}" and secret not in json.dumps(body), body)

    def until(self, condition: object, running: concurrent.futures.Future, what: str) -> None:
        """Poll `condition` while the background request runs (its failure is raised here)."""
        deadline = time.monotonic() + 30
        while not condition():  # type: ignore[operator]
            if running.done():  # result() raises what went wrong, if anything did
                health = self.client.request("GET", "/health-check")[1]
                raise RuntimeError(f"the background prediction ended before {what}: {running.result()}; "
                                   f"health: {health}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.005)

    def cancel(self, i: int) -> None:
        pid = f"soak-cancel-{i}"
        running = self.background.submit(self.other.request, "PUT", f"/predictions/{pid}", {"input": {"mode": "sleep"}})
        self.until(lambda: self.client.request("POST", f"/predictions/{pid}/cancel")[0] == 200, running,
                   "the prediction to start")
        body = running.result()[1]
        self.check("cancel", body["status"] == "canceled", body)

    def kill(self, external: bool) -> None:
        restarts = self.client.request("GET", "/health-check")[1]["worker_restarts"]
        if external:  # SIGKILL from outside while a prediction runs
            running = self.background.submit(self.predict, {"input": {"mode": "sleep"}}, self.other)
            self.until(lambda: self.client.status() == "BUSY", running, "the prediction to start")
            os.kill(worker_pid(self.server_pid), signal.SIGKILL)
            status, body = running.result()
        else:  # the model exits the worker
            status, body = self.predict({"input": {"mode": "exit"}})
        # "not available": the kill landed before the server handed the prediction to the worker
        self.check("worker killed", status == 200 and body["status"] == "failed"
                   and ("died" in body["error"] or "worker is not available" in body["error"]), body)
        deadline = time.monotonic() + 30  # the server may answer before it has noticed the death
        while self.client.request("GET", "/health-check")[1]["worker_restarts"] == restarts:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not replace its killed worker")
            time.sleep(0.005)
        self.wait_ready()


def _data_uri(text: str) -> str:
    return "data:text/plain;base64," + base64.b64encode(text.encode()).decode()


def run(predictions: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "predict.py").write_text(PREDICTOR)
        port = free_port()
        # The model's file outputs (one temporary directory each, thousands a run) stay in this directory.
        env = {**os.environ, "COG_RESTART_DEAD_WORKER": "1", "COG_CANCEL_GRACE": "1", "PYTHONUNBUFFERED": "1",
               "TMPDIR": directory}
        log = open(os.path.join(directory, "server.log"), "w+")  # noqa: SIM115 - closed below
        server = subprocess.Popen([sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", "--port", str(port),
                                   "--predictor", "predict.py:Predictor"], cwd=directory, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    soak = Soak(port, server.pid)
                    soak.wait_ready()
                    break
                except RuntimeError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the server did not start") from None
                    time.sleep(0.05)
            rss_start = rss_mib(server.pid)
            started = time.monotonic()
            for i in range(predictions):
                try:
                    soak.one(i)
                except RuntimeError as exc:
                    log.seek(0)
                    raise RuntimeError(f"prediction {i}: {exc}\nserver log (end):\n{log.read()[-3000:]}") from None
                if i == WARM_UP - 1:
                    rss_warm = rss_mib(server.pid)
            wall = time.monotonic() - started
            rss_end = rss_mib(server.pid)
            health = soak.client.request("GET", "/health-check")[1]
            return {"predictions": predictions, "wall_seconds": round(wall, 1), "counts": soak.counts,
                    "unexpected": soak.unexpected, "rss_start_mib": round(rss_start, 1),
                    "rss_after_warm_up_mib": round(rss_warm, 1), "rss_end_mib": round(rss_end, 1),
                    "final_status": health["status"], "worker_restarts": health["worker_restarts"]}
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--quick", action="store_true", help="a few predictions past the warm-up: checks it runs")
    args = parser.parse_args()
    if args.quick:
        args.predictions = WARM_UP + 100
    if args.predictions <= WARM_UP:
        parser.error(f"--predictions must be more than the warm-up of {WARM_UP}")
    result = run(args.predictions)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['predictions']} predictions in {result['wall_seconds']} s "
          f"({result['predictions'] / result['wall_seconds']:.0f}/s): {result['counts']}")
    print(f"server RSS: {result['rss_start_mib']} MiB at start, {result['rss_after_warm_up_mib']} MiB after "
          f"{WARM_UP} predictions, {result['rss_end_mib']} MiB at the end; "
          f"worker restarts {result['worker_restarts']}; final status {result['final_status']}")
    for line in result["unexpected"]:
        print("UNEXPECTED", line)


if __name__ == "__main__":
    main()
