"""Benchmark: cogbuild's runtime against Cog's own server (coglet, from `cog==0.23.1`), side by side.

Both serve the same no-op predictor; the same aiohttp load generator drives them, alternating
servers between rounds: a sync predictor over 1 keep-alive connection, then an async one
(`COG_MAX_CONCURRENCY=N`) over N connections. A 409 (slot still busy) is retried at once and
counted; latency runs from the first attempt to the 200. Prints req/s, p50 and p99 latency, the
ratios ours/coglet, and each server's RSS (server plus worker processes) when idle and after
at least --predictions (10,000) predictions.

    .venv/bin/python bench/runtime/bench_server.py [--cog-venv /tmp/cogvenv] [--seconds 5] [--connections 8]
    .venv/bin/python bench/runtime/bench_server.py --quick    # a second of load: checks the bench still runs

The Cog venv is created with `pip install cog==0.23.1` when it does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

SYNC_PREDICTOR = """\
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        pass

    def predict(self, text: str = Input(default="hi", description="echoed back")) -> str:
        return text
"""
ASYNC_PREDICTOR = SYNC_PREDICTOR.replace("def predict", "async def predict")
BODY = json.dumps({"input": {"text": "hello"}}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_cog_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with cog==0.23.1 ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--isolated", "-q", "cog==0.23.1"], check=True)
    return python


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


class Target:
    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: str, port: int) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.rss_idle = 0
        self.count = 0

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                async with session.get(self.url + "/health-check") as response:
                    if (await response.json()).get("status") == "READY":
                        return
            except (aiohttp.ClientError, json.JSONDecodeError):
                pass
            await asyncio.sleep(0.1)
        raise SystemExit(f"{self.name} never became READY")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def drive(url: str, connections: int, seconds: float) -> tuple[float, list[float], int, int]:
    """(predictions per second, latencies in seconds, 409 retries, failures) for `seconds` of closed-loop load."""
    connector = aiohttp.TCPConnector(limit=connections)
    latencies: list[float] = []
    failures = retries = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal failures, retries
            while time.monotonic() < deadline:
                started = time.perf_counter()
                while True:
                    async with session.post(url + "/predictions", data=BODY,
                                            headers={"Content-Type": "application/json"}) as response:
                        payload = await response.read()
                    if response.status != 409:
                        break
                    retries += 1
                if response.status == 200 and b'"succeeded"' in payload:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        began = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.monotonic() - began
    return len(latencies) / elapsed, latencies, retries, failures


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def start_pair(args: argparse.Namespace, source: str, concurrency: int) -> tuple[Target, Target]:
    model_dir = tempfile.mkdtemp(prefix="bench-model-")
    Path(model_dir, "predict.py").write_text(source)
    cog_python = ensure_cog_venv(Path(args.cog_venv))
    ours_port, coglet_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COG_")}
    env["COG_MAX_CONCURRENCY"] = str(concurrency)
    ours = Target("cogbuild", [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1",
                               "--port", str(ours_port), "--predictor", "predict.py:Predictor"],
                  env, model_dir, ours_port)
    coglet_env = dict(env, COG_PREDICT_TYPE_STUB="predict.py:Predictor", PORT=str(coglet_port),
                      PATH=f"{Path(args.cog_venv) / 'bin'}:{env.get('PATH', '')}")
    coglet = Target("coglet", [str(cog_python), "-m", "cog.server.http"], coglet_env, model_dir, coglet_port)
    return ours, coglet


async def run_scenario(args: argparse.Namespace, source: str, connections: int,
                       measure_memory: bool) -> dict[str, dict]:
    targets = start_pair(args, source, connections)
    results: dict[str, dict] = {t.name: {"rps": [], "latencies": [], "retries": 0, "failures": 0} for t in targets}
    try:
        async with aiohttp.ClientSession() as session:
            for target in targets:
                await target.wait_ready(session)
        await asyncio.sleep(1)
        for target in targets:
            target.rss_idle = tree_rss_kib(target.process.pid)
            await drive(target.url, connections, 0.5)  # warm-up
        for _ in range(args.rounds):
            for target in targets:
                rps, latencies, retries, failures = await drive(target.url, connections, args.seconds / args.rounds)
                result = results[target.name]
                result["rps"].append(rps)
                result["latencies"] += latencies
                result["retries"] += retries
                result["failures"] += failures
                target.count += len(latencies)
        if measure_memory:
            for target in targets:  # top up to at least --predictions each
                while target.count < args.predictions:
                    _, latencies, _, _ = await drive(target.url, connections, 1.0)
                    target.count += len(latencies)
            await asyncio.sleep(1)
            for target in targets:
                results[target.name]["memory"] = (target.rss_idle, tree_rss_kib(target.process.pid), target.count)
    finally:
        for target in targets:
            target.stop()
    return results


async def main_async(args: argparse.Namespace) -> None:
    print(f"no-op predictor, {args.seconds:g} s per setting and server in {args.rounds} alternating rounds; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'setting':>18} {'server':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'409 retries':>12} {'failed':>7}")
    memory = {}
    for label, source, connections in (("sync, 1 conn", SYNC_PREDICTOR, 1),
                                       (f"async, {args.connections} conns", ASYNC_PREDICTOR, args.connections)):
        results = await run_scenario(args, source, connections, measure_memory=connections == 1)
        stats = {}
        for name, result in results.items():
            lats = result["latencies"]
            stats[name] = (statistics.mean(result["rps"]), percentile(lats, 50) * 1000, percentile(lats, 99) * 1000)
            print(f"{label:>18} {name:>9} {stats[name][0]:>9.0f} {stats[name][1]:>8.2f} {stats[name][2]:>8.2f}"
                  f" {result['retries']:>12} {result['failures']:>7}")
            if "memory" in result:
                memory[name] = result["memory"]
        (o_rps, o_p50, o_p99), (c_rps, c_p50, c_p99) = stats["cogbuild"], stats["coglet"]
        print(f"{label:>18} {'ratio':>9} {o_rps / c_rps:>8.2f}x {o_p50 / c_p50:>7.2f}x {o_p99 / c_p99:>7.2f}x"
              "   (ours/coglet: req/s higher is better, latency lower is better)")
    print(f"{'server':>9} {'RSS idle MiB':>13} {'RSS after MiB':>14} {'predictions':>12}")
    for name, (idle, after, count) in memory.items():
        print(f"{name:>9} {idle / 1024:>13.1f} {after / 1024:>14.1f} {count:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cog-venv", default="/tmp/cogvenv")
    parser.add_argument("--seconds", type=float, default=6.0, help="load time per connection setting and server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--predictions", type=int, default=10_000, help="per server before RSS is read again")
    parser.add_argument("--quick", action="store_true", help="a second of load, to check the bench still runs")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.connections, args.predictions = 0.6, 1, 2, 200
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
