"""The server's handle on the worker process: start it, feed it predictions, watch it die.

Events from the worker update `Prediction` objects; the HTTP layer only waits on them.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from typing import Any, Callable

from ..signature import Signature
from . import protocol
from .prediction import LogBuffer, Prediction, now_iso
from .protocol import (Cancel, Done, HealthcheckRequest, HealthcheckResult, LoadFailed, Log, Metric, Output, Predict,
                       Request, SetupDone, Shutdown, SignatureLoaded)
from .status import Health, PredictionStatus

OutputHook = Callable[[Prediction, Output], Any]  # coroutine function
DoneHook = Callable[[Prediction, Done], Any]  # coroutine function
LogHook = Callable[[Prediction, str, str], None]  # (prediction, the new text with secrets redacted, source)
MetricHook = Callable[[Prediction, Metric], None]


def worker_python() -> str:
    """The interpreter that imports the model: in an image the system's (COG_WORKER_PYTHON), while the server
    runs in a venv of its own, so the worker sees the model's packages and never the server's."""
    return os.environ.get("COG_WORKER_PYTHON") or sys.executable


class WorkerProcess:
    def __init__(self, predictor_ref: str, *, on_output: OutputHook, on_done: DoneHook, on_log: LogHook,
                 on_metric: MetricHook, cancel_grace: float = 1.0, restart_dead_worker: bool = False,
                 scratch_root: str | None = None, entry: str = "predict", setup_timeout: float | None = None) -> None:
        self.predictor_ref = predictor_ref
        self.entry = entry  # "predict" (run/predict) or "train"
        self.setup_timeout = setup_timeout
        self.on_output, self.on_done, self.on_log, self.on_metric = on_output, on_done, on_log, on_metric
        self.cancel_grace = cancel_grace
        self.restart_dead_worker = restart_dead_worker
        self.scratch_root = scratch_root  # each worker gets a directory in here for its output files
        self.restarts = 0  # how often a worker that died on its own was replaced
        # STARTING, then READY or SETUP_FAILED; DEFUNCT once a worker died and was not replaced.
        self.state = Health.STARTING
        self.signature: Signature | None = None
        self.setup_info: dict[str, Any] = {"started_at": None, "completed_at": None, "status": None}
        self.setup_logs = LogBuffer()
        self._in_flight: dict[str, Prediction] = {}  # submitted predictions the worker has not reported done
        self.ready = asyncio.Event()  # set once setup finished, either way
        self.process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._control_writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task] = []
        self._expected_exit = False
        self._exit_reason = ""
        self._healthcheck: asyncio.Future | None = None
        self._healthcheck_id = 0
        self.scratch: str | None = None  # the running worker's directory for output files
        self._fd_logs: list[_FdLog] = []

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.state, self._expected_exit = Health.STARTING, False
        self.ready.clear()
        self.setup_info = {"started_at": now_iso(), "completed_at": None, "status": None}
        self.setup_logs = LogBuffer()
        ours, theirs = socket.socketpair()  # predictions in, all events out
        control_ours, control_theirs = socket.socketpair()  # cancel and healthcheck, heard while busy
        (out_read, out_write), (err_read, err_write) = os.pipe(), os.pipe()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.scratch is not None:  # the previous worker's; its predictions have all ended
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch = tempfile.mkdtemp(prefix="worker-", dir=self.scratch_root)
        try:
            self.process = await asyncio.create_subprocess_exec(
                worker_python(), "-m", "cog.server.worker", "--predictor", self.predictor_ref, "--entry", self.entry,
                "--fd", str(theirs.fileno()), "--control-fd", str(control_theirs.fileno()), "--scratch", self.scratch,
                stdin=asyncio.subprocess.DEVNULL, stdout=out_write, stderr=err_write,
                pass_fds=(theirs.fileno(), control_theirs.fileno()), env=env, start_new_session=True,
            )
        finally:  # the worker's ends
            theirs.close()
            control_theirs.close()
            os.close(out_write)
            os.close(err_write)
        self._fd_logs = [_FdLog(fd, functools.partial(self._log_fd_text, source=source))
                         for fd, source in ((out_read, "stdout"), (err_read, "stderr"))]
        reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=protocol.MAX_LINE)
        _, self._control_writer = await asyncio.open_unix_connection(sock=control_ours)
        self._tasks = [asyncio.create_task(self._read_events(reader, self.process))]
        if self.setup_timeout:
            self._tasks.append(asyncio.create_task(self._limit_setup(self.process, self.setup_timeout)))

    async def _limit_setup(self, process: asyncio.subprocess.Process, timeout: float) -> None:
        """COG_SETUP_TIMEOUT: a setup() that runs longer fails, and its worker is stopped."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except asyncio.TimeoutError:
            if self.process is not process or self.state != Health.STARTING:
                return
            self._end_setup(PredictionStatus.FAILED, f"setup() did not finish within {timeout:g} seconds (COG_SETUP_TIMEOUT)")
            self._expected_exit, self._exit_reason = True, "setup timed out"
            self._kill(process)

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        self._expected_exit, self._exit_reason = True, "the server is shutting down"
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(Shutdown())
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            self._kill(process)
            await process.wait()

    def _kill(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the predictor's own children go too

    async def restart(self, reason: str) -> None:
        """Kill the worker on purpose and start a fresh one (it runs setup again)."""
        process = self.process
        self._expected_exit, self._exit_reason = True, reason
        if process is not None and process.returncode is None:
            self._kill(process)
            await process.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.start()

    @property
    def setup(self) -> dict[str, Any]:
        """Setup's report for /health-check: started_at, completed_at, status, logs."""
        return {**self.setup_info, "logs": self.setup_logs.text()}

    # ---------------------------------------------------------------- predictions

    async def _send(self, message: Request) -> None:
        writer = self._control_writer if isinstance(message, (Cancel, HealthcheckRequest)) else self._writer
        if writer is None:
            raise ConnectionError("the worker is not running")
        writer.write(protocol.encode(message))
        await writer.drain()

    async def submit(self, prediction: Prediction, wire_input: dict[str, Any]) -> None:
        """Hand the prediction to the worker; its events then update it. ConnectionError or RuntimeError
        when the worker cannot take it (the prediction is not in flight then)."""
        self._in_flight[prediction.id] = prediction
        try:
            await self._send(Predict(prediction.id, wire_input, prediction.context))
        except BaseException:
            self.forget(prediction)
            raise

    def forget(self, prediction: Prediction) -> None:
        """Stop routing the worker's events to `prediction` (it was finished by other means)."""
        self._in_flight.pop(prediction.id, None)

    async def cancel(self, prediction: Prediction) -> None:
        """Cancel politely; if a sync predictor ignores it past the grace, kill and respawn the worker."""
        prediction.cancel_requested = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(Cancel(prediction.id))
        try:
            await asyncio.wait_for(asyncio.shield(prediction.done.wait()), self.cancel_grace)
        except asyncio.TimeoutError:
            if not prediction.is_terminal and prediction.id in self._in_flight:
                await self.restart(f"it was restarted because canceled prediction {prediction.id} did not stop")

    async def healthcheck(self, timeout: float) -> str | None:
        """Run the predictor's own healthcheck(); None when healthy, else why not.

        Concurrent callers share one check."""
        if self._healthcheck is None or self._healthcheck.done():
            self._healthcheck_id += 1
            self._healthcheck = asyncio.get_running_loop().create_future()
            try:
                await self._send(HealthcheckRequest(self._healthcheck_id))
            except (ConnectionError, RuntimeError) as exc:
                self._healthcheck.set_result(f"the worker cannot be reached ({exc})")
        try:
            return await asyncio.wait_for(asyncio.shield(self._healthcheck), timeout)
        except asyncio.TimeoutError:
            return f"user-defined healthcheck timed out after {timeout:.1f} seconds"

    # ---------------------------------------------------------------- events from the worker

    async def _read_events(self, reader: asyncio.StreamReader, process: asyncio.subprocess.Process) -> None:
        broken = None
        try:
            while line := await reader.readline():
                event = protocol.decode(line, protocol.Event)
                try:
                    await self._handle(event)
                except Exception:  # noqa: BLE001 - a bug of ours must not stop the events of others
                    traceback.print_exc()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as exc:  # ValueError: a malformed line
            broken = f"its message channel broke ({exc})"
            self._kill(process)  # a worker we cannot understand cannot be trusted with more work
        returncode = await process.wait()
        await self._worker_gone(returncode, broken)

    async def _handle(self, event: protocol.Event) -> None:
        if isinstance(event, Log):
            prediction = self._in_flight.get(event.id) if event.id else self._sole()
            self._log(prediction, event.text, "stderr" if event.source == "stderr" else "stdout")
        elif isinstance(event, Metric):
            if (prediction := self._in_flight.get(event.id)) is not None:
                self.on_metric(prediction, event)
        elif isinstance(event, Output):
            if (prediction := self._in_flight.get(event.id)) is not None:
                await self.on_output(prediction, event)
        elif isinstance(event, Done):
            self._drain_fd_logs()  # what the worker wrote to fd 1/2 before it finished belongs to the prediction
            if (prediction := self._in_flight.pop(event.id, None)) is not None:
                await self.on_done(prediction, event)
        elif isinstance(event, HealthcheckResult):
            if self._healthcheck is not None and not self._healthcheck.done() and event.id == self._healthcheck_id:
                self._healthcheck.set_result(None if event.ok else event.error)
        elif isinstance(event, SignatureLoaded):
            self.signature = Signature.from_json(event.signature)
        elif isinstance(event, SetupDone):
            self._end_setup(PredictionStatus.SUCCEEDED if event.ok else PredictionStatus.FAILED, event.error)
        elif isinstance(event, LoadFailed):
            self._end_setup(PredictionStatus.FAILED, event.error)

    def _end_setup(self, status: PredictionStatus, error: str | None) -> None:
        self.setup_info["completed_at"] = now_iso()
        self.setup_info["status"] = status
        if error:
            self.setup_logs.append(error if error.endswith("\n") else error + "\n")
        self.state = Health.READY if status == PredictionStatus.SUCCEEDED else Health.SETUP_FAILED
        self.ready.set()

    def _sole(self) -> Prediction | None:
        return next(iter(self._in_flight.values())) if len(self._in_flight) == 1 else None

    def _log(self, prediction: Prediction | None, text: str, source: str) -> None:
        if prediction is not None:
            self.on_log(prediction, prediction.add_log(text), source)
        elif self.state == Health.STARTING:
            self.setup_logs.append(text)
        else:  # no one prediction owns it (concurrent ones, or between predictions): hide all their secrets
            for running in list(self._in_flight.values()):
                text = running.redact(text)
            sys.stderr.write(text)

    def _log_fd_text(self, text: str, source: str) -> None:
        self._log(self._sole(), text, source)

    def _drain_fd_logs(self) -> None:
        for fd_log in self._fd_logs:
            fd_log.read(drain=True)

    def scratch_file(self, path: object) -> str:
        """`path` when it names a regular file inside the running worker's scratch directory;
        ValueError otherwise. The server reads output files from nowhere else."""
        root = os.path.realpath(self.scratch or "/nonexistent") + os.sep
        real = os.path.realpath(path) if isinstance(path, str) else ""
        # The worker puts each file in a directory of its own: never straight into scratch.
        if not real.startswith(root) or os.sep not in real[len(root):] or not os.path.isfile(real):
            raise ValueError("the worker named an output file outside its scratch directory")
        return real

    async def _worker_gone(self, returncode: int, broken: str | None = None) -> None:
        self._drain_fd_logs()
        for fd_log in self._fd_logs:
            fd_log.close()
        for writer in (self._writer, self._control_writer):
            if writer is not None:
                writer.close()
        self._writer = self._control_writer = None
        if self._expected_exit:
            cause = self._exit_reason
        elif broken:
            cause = broken
        elif returncode < 0:
            cause = f"it was killed by signal {signal.Signals(-returncode).name}"
        else:
            cause = f"it exited with code {returncode}"
        for prediction in list(self._in_flight.values()):
            self._in_flight.pop(prediction.id, None)
            if prediction.cancel_requested:
                await self.on_done(prediction, Done(prediction.id, PredictionStatus.CANCELED))
            else:
                error = f"the prediction's worker process died: {cause}"
                await self.on_done(prediction, Done(prediction.id, PredictionStatus.FAILED, error=error))
        if self.state == Health.STARTING and not self._expected_exit:
            self._end_setup(PredictionStatus.FAILED, f"the worker process died during setup: {cause}")
        elif not self._expected_exit and self.state == Health.READY:
            if self.restart_dead_worker:
                self.restarts += 1
                await self.start()
                note = f"cog: worker restarted (#{self.restarts}) after it died: {cause}\n"
                self.setup_logs = LogBuffer(note + self.setup_logs.text())
                return
            self.state = Health.DEFUNCT
        self.ready.set()


class _FdLog:
    """What the worker writes straight to fd 1 or 2 (C code, subprocesses), read without blocking,
    so that the server can take in all of it before it handles the event that ends a prediction.
    Text goes on in whole lines (a secret split across two reads could not be redacted)."""

    LIMIT = 8192  # send a partial line once this much has piled up

    def __init__(self, fd: int, sink: Callable[[str], None]) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        asyncio.get_running_loop().add_reader(fd, self.read)

    def read(self, drain: bool = False) -> None:
        """Take in what is in the pipe: one chunk when called by the loop, everything when draining."""
        while self.fd is not None:
            try:
                chunk = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                drain = True
                break
            self.pending += self.decoder.decode(chunk)
            if not drain:
                break
        self._send(whole=drain)

    def _send(self, whole: bool) -> None:
        text = self.pending
        cut = len(text) if whole or len(text) >= self.LIMIT else max(text.rfind("\n"), text.rfind("\r")) + 1
        if cut:
            self.pending = text[cut:]
            self.sink(text[:cut])

    def close(self) -> None:
        if self.fd is not None:
            asyncio.get_running_loop().remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
