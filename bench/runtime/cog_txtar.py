"""Measure: which of Cog's HTTP-only integration tests pass against this runtime's server.

Cog's suite (replicate/cog, integration-tests/tests/*.txtar) is written in testscript. The tests
that only serve a model and talk to it over HTTP (`cog serve`, `curl`, `stdout` regexps,
`webhook-server-*`, `exec`) can run here without Docker: each file's model is served from its own
source with `python -m cog.server.http`, with cog.yaml's predict/train/environment/concurrency as
the image would set them. Tests that use other `cog` commands are reported as not applicable.

    .venv/bin/python bench/runtime/cog_txtar.py DIR_WITH_TXTAR_FILES [NAME ...] [--python PY] [--verbose]
    .venv/bin/python bench/runtime/cog_txtar.py --quick    # one script of our own: the runner still works

`--python` picks the interpreter that serves (default: this one; its `cog` is the runtime measured);
with `--coglet`, that interpreter's `cog` is Replicate's own (pip install cog), started as Cog starts it,
to compare.
Prints one line per test (PASS / FAIL with the failing line / N/A with why) and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))
from http_server import LoopbackHTTPServer, Reply, Request, free_port  # noqa: E402

OTHER_COG_COMMANDS = ("build",)  # no-ops here: the model is served from its source


class Failed(Exception):
    pass


class NotApplicable(Exception):
    pass


def why_not_applicable(lines: list[str]) -> str | None:
    """Why a script needs more than serving its model over HTTP, or None."""
    script = "\n".join(line for line in lines if not line.strip().startswith("#"))
    commands = set(re.findall(r"^\s*(?:\[[^]]*\]\s*)?!?\s*cog (\w+)", script, flags=re.M))
    if "serve" not in commands:
        return "does not serve over HTTP"
    if other := commands - {"serve", *OTHER_COG_COMMANDS}:
        return f"uses `cog {' '.join(sorted(other))}`"
    if re.search(r"\bdocker (inspect|images|run|ps|exec|pull)\b", script):
        return "uses docker"
    return None


def parse_txtar(text: str) -> tuple[list[str], dict[str, str]]:
    """(script lines, files) of a txtar archive."""
    parts = re.split(r"^-- (.+?) --$", text, flags=re.M)
    files = {parts[i].strip(): parts[i + 1].lstrip("\n") for i in range(1, len(parts), 2)}
    return parts[0].splitlines(), files


def split_args(line: str) -> list[str]:
    """testscript's quoting: whitespace separates, single quotes group ('' is a quote)."""
    args, current, quoted, started, i = [], [], False, False, 0
    while i < len(line):
        char = line[i]
        if quoted:
            if char == "'" and line[i + 1:i + 2] == "'":
                current.append("'")
                i += 1
            elif char == "'":
                quoted = False
            else:
                current.append(char)
        elif char == "'":
            quoted = started = True
        elif char.isspace():
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if started:
        args.append("".join(current))
    return args


def expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), text)


class WebhookSink(LoopbackHTTPServer):
    """Records the first terminal webhook and summarizes it as Cog's harness does."""

    def __init__(self) -> None:
        self.result: dict | None = None
        self.done = threading.Event()
        super().__init__(self._answer)
        self.webhook_url = f"{self.url}/webhook"

    def _answer(self, request: Request) -> Reply:
        body = json.loads(request.body or b"{}") if request.method == "POST" else {}
        if body.get("status") in ("succeeded", "failed", "canceled") and self.result is None:
            output = body.get("output")
            size = len(output) if isinstance(output, str) else len(json.dumps(output, separators=(",", ":")))
            self.result = {"status": body["status"], "output_size": size, "has_error": bool(body.get("error")),
                           "error_message": body.get("error") or "", "metrics": body.get("metrics")}
            self.done.set()
        return Reply(200)


class UploadSink(LoopbackHTTPServer):
    """Takes output files by PUT and counts them, as Cog's harness's upload server does."""

    def __init__(self) -> None:
        super().__init__(self._answer)

    def uploads(self) -> list[str]:
        return [request.path for request in self.requests if request.method == "PUT"]

    def _answer(self, request: Request) -> Reply:
        # The harness's answer names the host as a container sees it.
        return Reply(200, {"Location": f"http://host.docker.internal:{self.port}{request.path}"})


class Script:
    def __init__(self, lines: list[str], files: dict[str, str], python: str, verbose: bool, coglet: bool) -> None:
        self.lines, self.files, self.python, self.verbose, self.coglet = lines, files, python, verbose, coglet
        self.work = Path(tempfile.mkdtemp(prefix="cog-txtar-"))
        self.env = {"WORK": str(self.work)}
        self.stdout = self.stderr = ""
        self.server: subprocess.Popen | None = None
        self.sink: WebhookSink | None = None
        self.uploads: UploadSink | None = None

    def run(self) -> None:
        for name, content in self.files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        try:
            for line in self.lines:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("["):  # a condition such as [short]: the full suite runs here
                    line = line[line.index("]") + 1:].strip()
                    if line.startswith("skip"):
                        continue
                negate = line.startswith("! ")
                args = split_args(line[2:] if negate else line)
                if self.verbose:
                    print("   >", line, file=sys.stderr)
                try:
                    self.step(args, negate)
                except Failed as failure:
                    raise Failed(f"{line}: {failure}") from None
        finally:
            self.stop()

    def step(self, args: list[str], negate: bool) -> None:
        command, rest = args[0], args[1:]
        if command == "cog":
            if rest[0] == "serve":
                self.serve(negate, rest[1:])
            elif rest[0] not in OTHER_COG_COMMANDS:
                raise NotApplicable(f"uses `cog {rest[0]}`")
        elif command == "curl":
            self.curl(rest, negate)
        elif command in ("stdout", "stderr"):
            text = self.stdout if command == "stdout" else self.stderr
            found = re.search(expand(rest[0], self.env), text, flags=re.M) is not None
            if found == negate:
                raise Failed(f"{'found' if found else 'not found'} in: {text[:600]}")
        elif command == "exec":
            self.exec(rest, negate)
        elif command == "webhook-server-start":
            self.sink = WebhookSink()
            self.env["WEBHOOK_URL"] = self.sink.webhook_url
        elif command == "webhook-server-wait":
            assert self.sink is not None
            timeout = float(rest[0].rstrip("s")) if rest else 120
            if not self.sink.done.wait(timeout):
                raise Failed("no terminal webhook")
            self.stdout = json.dumps(self.sink.result, separators=(",", ":")) + "\n"
        elif command == "upload-server-start":
            self.uploads = UploadSink()
            self.env["UPLOAD_SERVER_URL"] = self.uploads.url + "/"
        elif command == "upload-server-count":
            assert self.uploads is not None
            if (len(self.uploads.uploads()) == int(rest[0])) == negate:
                raise Failed(f"{len(self.uploads.uploads())} uploads")
        elif command in ("env",):
            key, _, value = rest[0].partition("=")
            self.env[key] = value
        else:
            raise NotApplicable(f"uses `{command}`")

    def serve(self, negate: bool, args: list[str]) -> None:
        config = yaml.safe_load((self.work / "cog.yaml").read_text()) or {}
        build = config.get("build") or {}
        if build.get("python_packages") or build.get("python_requirements"):
            raise NotApplicable("needs Python packages installed by a build")
        env = {**os.environ, **self.env}
        for item in config.get("environment") or []:
            key, _, value = item.partition("=")
            env[key] = value
        if (config.get("concurrency") or {}).get("max"):
            env["COG_MAX_CONCURRENCY"] = str(config["concurrency"]["max"])
        port = free_port()
        predictor = config.get("predict") or config.get("run") or "predict.py:Predictor"
        if self.coglet:  # Cog's images set these, and its server reads them
            env.update({"PORT": str(port), "COG_PREDICT_TYPE_STUB": predictor,  # its worker runs `python`
                        "PATH": f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"})
            command = [self.python, "-m", "cog.server.http", "--host", "127.0.0.1"]
        else:
            command = [self.python, "-m", "cog.server.http", "--host", "127.0.0.1", "--port", str(port),
                       "--predictor", predictor]
        if config.get("train"):
            env["COG_TRAIN"] = config["train"]
        if "--upload-url" in args:
            command += ["--upload-url", expand(args[args.index("--upload-url") + 1], self.env)]
        self.server = subprocess.Popen(command, cwd=self.work, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.env["SERVER_URL"] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = self._health()  # as Cog's harness: setup over and the server answering
            if status in ("READY", "UNHEALTHY", "BUSY") or (negate and status in ("SETUP_FAILED", "DEFUNCT")):
                return
            if status in ("SETUP_FAILED", "DEFUNCT") or self.server.poll() is not None:
                break
            time.sleep(0.2)
        if not negate:
            raise Failed(f"server did not become READY (last status {self._health()})")

    def _health(self) -> str | None:
        try:
            with urllib.request.urlopen(self.env["SERVER_URL"] + "/health-check", timeout=5) as response:
                return json.loads(response.read()).get("status")
        except (OSError, ValueError):
            return None

    def curl(self, args: list[str], negate: bool) -> None:
        headers = {}
        while args and args[0] == "-H":
            key, _, value = args[1].partition(":")
            headers[key.strip()] = value.strip()
            args = args[2:]
        method, path = args[0], args[1]
        body = expand(args[2], self.env).encode() if len(args) > 2 else None
        if body and body.startswith(b"@"):
            body = (self.work / body[1:].decode()).read_bytes()
        if body:
            headers["Content-Type"] = "application/json"
        status, text = None, ""
        for _ in range(10):  # as Cog's harness: retry until the wanted kind of answer
            request = urllib.request.Request(self.env["SERVER_URL"] + path, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, text = response.status, response.read().decode()
            except urllib.error.HTTPError as error:
                status, text = error.code, error.read().decode()
            except OSError:
                status = None
            if status is not None and (200 <= status < 300) != negate:
                break
            time.sleep(0.5)
        else:
            raise Failed(f"answered {status}: {text[:300]}")
        if negate:
            self.stderr = text
        else:
            self.stdout = text

    def exec(self, args: list[str], negate: bool) -> None:
        env = {**os.environ, **self.env}
        try:
            done = subprocess.run(args, cwd=self.work, env=env, capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            raise NotApplicable(f"needs {args[0]}") from None
        self.stdout, self.stderr = done.stdout, done.stderr
        if (done.returncode == 0) == negate:
            raise Failed(f"exit {done.returncode}: {done.stderr[-300:]}")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for sink in (self.sink, self.uploads):
            if sink is not None:
                sink.close()


# --quick: a script in testscript's form, written for this runner, so it can be checked without Cog's suite.
QUICK_SCRIPT = """\
cog serve
curl POST /predictions '{"input":{"n":2}}'
stdout '"output":"tick tick"'
stdout '"status":"succeeded"'
! curl POST /predictions '{"input":{"m":1}}'
webhook-server-start
curl -H Prefer:respond-async POST /predictions '{"input":{"n":3},"webhook":"$WEBHOOK_URL"}'
webhook-server-wait 60s
stdout '"status":"succeeded","output_size":14'
-- cog.yaml --
run: "predict.py:Predictor"
-- predict.py --
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, n: int) -> str:
        return " ".join(["tick"] * n)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, nargs="?")
    parser.add_argument("--quick", action="store_true", help="run one small script of our own instead")
    parser.add_argument("names", nargs="*", help="test names (default: all)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--coglet", action="store_true", help="--python's cog is Replicate's Cog")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.directory = Path(tempfile.mkdtemp(prefix="cog-txtar-quick-"))
        (args.directory / "quick.txtar").write_text(QUICK_SCRIPT)
    elif args.directory is None:
        parser.error("give a directory of .txtar files, or --quick")
    paths = sorted(args.directory.glob("*.txtar"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
    counts = {"PASS": 0, "FAIL": 0, "N/A": 0}
    for path in paths:
        lines, files = parse_txtar(path.read_text())
        if (reason := why_not_applicable(lines)) is not None:
            counts["N/A"] += 1
            if args.verbose:
                print(f"N/A  {path.stem}  {reason}")
            continue
        try:
            Script(lines, files, args.python, args.verbose, args.coglet).run()
            verdict, why = "PASS", ""
        except NotApplicable as reason:
            verdict, why = "N/A", str(reason)
        except Failed as failure:
            verdict, why = "FAIL", str(failure)
        counts[verdict] += 1
        print(f"{verdict:4} {path.stem}{'  ' + why if why else ''}", flush=True)
    ran = counts["PASS"] + counts["FAIL"]
    print(f"\n{counts['PASS']} of {ran} HTTP-only tests pass "
          f"({counts['N/A']} not applicable: other cog commands, docker, packages)")
    return 0 if counts["FAIL"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
