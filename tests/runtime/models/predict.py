"""Predictors the runtime tests serve, one class per behaviour (select with --predictor predict.py:NAME)."""

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any, Iterator, List, Optional

import cog
from cog import (AsyncConcatenateIterator, BaseModel, BasePredictor, BaseRunner, ConcatenateIterator, File, Input,
                 Path, Secret, current_scope)


class Echo(BasePredictor):
    def setup(self) -> None:
        print("echo setup ran")

    def predict(
        self,
        text: str = Input(description="Some text", min_length=1, max_length=20),
        count: int = Input(description="How many", default=1, ge=1, le=5),
        ratio: float = Input(default=0.5, ge=0.0, le=1.0),
        loud: bool = False,
        color: str = Input(default="red", choices=["red", "green"]),
        code: str = Input(default="ab", regex=r"^[a-z]+$"),
        note: Optional[str] = None,
        tags: List[str] = Input(default=None, description="Tags"),
        token: Secret = Input(default=None),
    ) -> dict:
        print(f"echoing {text} with token {token.get_secret_value() if token else None}")
        print("to stderr", file=sys.stderr)
        return {"text": text * count, "ratio": ratio, "loud": loud, "color": color, "code": code,
                "note": note, "tags": tags, "has_token": token is not None}


class Files(BasePredictor):
    def predict(self, image: Path, extra: List[Path] = Input(default=None),
                blob: File = Input(default=None)) -> dict:
        names = [image] + list(extra or [])
        out = {"sizes": [os.path.getsize(p) for p in names], "content": image.read_text(),
               "is_cog_path": isinstance(image, cog.Path)}
        if blob is not None:
            out["blob"] = blob.read().decode()
        global SEEN
        SEEN = str(image)
        print(f"input path: {image}")
        return out


class Output(BaseModel):
    caption: str
    picture: Path


class FileOutput(BasePredictor):
    def predict(self, text: str = "hi") -> Output:
        path = os.path.join(tempfile.mkdtemp(), "out.txt")
        with open(path, "w") as handle:
            handle.write(text)
        return Output(caption=text.upper(), picture=Path(path))


class PathOutput(BasePredictor):
    def predict(self, text: str = "hi") -> Path:
        path = os.path.join(tempfile.mkdtemp(), "answer.txt")
        with open(path, "w") as handle:
            handle.write(text)
        return Path(path)


class Fails(BasePredictor):
    def predict(self, message: str = "boom") -> str:
        print("about to fail")
        raise ValueError(message)


class Slow(BasePredictor):
    def predict(self, seconds: float = 1.0) -> str:
        print("started", flush=True)
        time.sleep(seconds)
        return "slept"


class Stubborn(BasePredictor):
    """Blocks the cancel signal, so only killing the worker can stop it."""

    def predict(self, seconds: float = 30.0) -> str:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        time.sleep(seconds)
        return "never canceled"


class Tokens(BasePredictor):
    @cog.streaming
    def predict(self, words: int = 3, delay: float = 0.0) -> ConcatenateIterator[str]:
        for i in range(words):
            time.sleep(delay)
            print(f"token {i}")
            yield f"w{i} "


class SlowToStart(BasePredictor):
    def setup(self) -> None:
        time.sleep(2)

    def predict(self) -> str:
        return "ok"


class Numbers(BasePredictor):
    def predict(self, n: int = 3) -> Iterator[int]:
        yield from range(n)


class AsyncSlow(BasePredictor):
    @cog.concurrent(max=2)
    async def predict(self, seconds: float = 0.5, tag: str = "x") -> str:
        print(f"async start {tag}")
        await asyncio.sleep(seconds)
        return f"done {tag}"


class AsyncTokens(BasePredictor):
    async def predict(self, words: int = 3) -> AsyncConcatenateIterator[str]:
        for i in range(words):
            await asyncio.sleep(0.01)
            yield f"a{i} "


class Crash(BasePredictor):
    def predict(self, how: str = Input(default="exit", choices=["exit", "segv", "kill"])) -> str:
        print("crashing", flush=True)
        if how == "exit":
            os._exit(3)
        if how == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        os.kill(os.getpid(), signal.SIGKILL)
        return "unreachable"


class SetupFails(BasePredictor):
    def setup(self) -> None:
        print("loading weights")
        raise RuntimeError("weights are missing")

    def predict(self) -> str:
        return "unreachable"


class Weights(BasePredictor):
    def setup(self, weights: Optional[Path] = None) -> None:
        self.weights = weights

    def predict(self) -> str:
        return str(self.weights)


class Scoped(BaseRunner):
    def run(self, x: int = 1) -> dict:
        scope = current_scope()
        scope.record_metric("tokens", x)
        self.record_metric("calls", 1, mode="incr")
        return {"context": scope.context}


def plain(a: int, b: int = 2) -> int:
    return a + b


class Untyped(BasePredictor):
    def predict(self, thing) -> str:
        return thing


class Nested(BasePredictor):
    def predict(self, grid: List[List[str]]) -> str:
        return ""


class BadDefault(BasePredictor):
    def predict(self, n: int = Input(default=0, ge=1)) -> int:
        return n


class SelfChecking(BasePredictor):
    """healthcheck() reports unhealthy once a prediction has set the flag, or hangs on request."""

    def setup(self) -> None:
        self.state = "ok"

    def healthcheck(self) -> bool:
        if self.state == "hang":
            time.sleep(30)
        if self.state == "raise":
            raise RuntimeError("GPU fell off the bus")
        return self.state == "ok"

    def predict(self, state: str = "ok") -> str:
        self.state = state
        return state


class Frames(BasePredictor):
    def predict(self, count: int = 2) -> Iterator[Path]:
        for i in range(count):
            path = os.path.join(tempfile.mkdtemp(), f"frame{i}.png")
            with open(path, "wb") as handle:
                handle.write(b"png%d" % i)
            yield Path(path)


class Chatty(BasePredictor):
    """Prints and yields without pause, so a cancel lands in the middle of sending."""

    def predict(self, lines: int = 1_000_000, size: int = 1000) -> Iterator[str]:
        for i in range(lines):
            print(f"line {i} " + "x" * 200)
            yield "y" * size


class AsyncStubborn(BasePredictor):
    @cog.concurrent(max=2)
    async def predict(self, seconds: float = 30.0) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            time.sleep(seconds)  # noqa: ASYNC251  swallows the cancel and blocks the event loop, on purpose
        return "done"


class Mixed(BasePredictor):
    def predict(self, x: float = 1.5) -> List[dict]:
        path = os.path.join(tempfile.mkdtemp(), "note.json")
        with open(path, "w") as handle:
            handle.write("{}")
        return [{"x": x, "flag": True, "nothing": None, "files": [Path(path)], "tuple": (1, 2)}]


class Unsendable(BasePredictor):
    def predict(self, what: str = "object") -> dict:
        if what == "nan":
            return {"value": float("nan")}
        return {"value": object()}


class Verbose(BasePredictor):
    def setup(self) -> None:
        print("loading", end="")  # no newline: must still reach the setup logs

    def predict(self, n: int = 3) -> int:
        for i in range(n):
            print(f"line {i}")
        print("no newline at the end", end="")
        return n


class Corrupt(BasePredictor):
    """Writes junk (or a malformed message) into the worker's event socket, as a buggy native library might."""

    def predict(self, line: str = "this is not json") -> str:
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        os.write(fd, line.encode() + b"\n")
        time.sleep(30)
        return "unreachable"


class FileLikeOutput(BasePredictor):
    def predict(self) -> File:
        path = os.path.join(tempfile.mkdtemp(), "page.html")
        with open(path, "w") as handle:
            handle.write("<p>hi</p>")
        return open(path, "rb")


class LeakyError(BasePredictor):
    def predict(self, key: Secret) -> str:
        raise RuntimeError(f"could not log in with {key.get_secret_value()}")


class AsyncSelfChecking(BasePredictor):
    async def setup(self) -> None:
        self.healthy = asyncio.Event()  # bound to the predictions' loop
        self.healthy.set()

    async def healthcheck(self) -> bool:
        await asyncio.sleep(0)
        return self.healthy.is_set()

    async def predict(self, healthy: bool = True) -> bool:
        if healthy:
            self.healthy.set()
        else:
            self.healthy.clear()
        return healthy


class Whereabouts(BasePredictor):
    """Which interpreter runs the predictor, and whether the server's aiohttp is in sight."""

    def predict(self) -> dict:
        import importlib.util

        return {"executable": sys.executable, "aiohttp": importlib.util.find_spec("aiohttp") is not None}


class SecretList(BasePredictor):
    """Prints its secrets, writes one straight to fd 2, and fails on request with a secret in the error."""

    def predict(self, keys: List[Secret], fail: bool = False) -> str:
        print("keys: " + ", ".join(k.get_secret_value() for k in keys))
        os.write(2, f"fd2: {keys[0].get_secret_value()}\n".encode())
        if fail:
            raise RuntimeError(f"rejected {keys[-1].get_secret_value()}")
        return f"{len(keys)} keys"


class EchoJson(BasePredictor):
    """A model that returns what the client sent, as JSON."""

    def predict(self, payload: str) -> Any:
        return json.loads(payload)


class SecretOutput(BasePredictor):
    def predict(self, key: Secret) -> Secret:
        return key


class FdSecret(BasePredictor):
    """Concurrent predictions write their secret to fd 2: no one prediction owns that text."""

    @cog.concurrent(max=2)
    async def predict(self, key: Secret, delay: float = 0.3) -> str:
        await asyncio.sleep(delay)
        os.write(2, f"fd2 from the model: {key.get_secret_value()}\n".encode())
        await asyncio.sleep(delay)
        return "written"


class Forger(BasePredictor):
    """Writes a 'done' event of its own into the worker's event socket, naming a host file as output."""

    def predict(self, path: str = "/etc/passwd") -> str:
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        event = {"ev": "done", "id": current_scope().prediction_id, "status": "succeeded", "output": None,
                 "files": [{"at": [], "path": path}], "error": None, "metrics": {}}
        os.write(fd, json.dumps(event).encode() + b"\n")
        time.sleep(1)
        return "unreachable"
