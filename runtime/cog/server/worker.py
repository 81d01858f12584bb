"""The worker process: imports the predictor, runs setup(), then runs predictions.

Started by the server as `python -m cog.server.worker --predictor REF --fd N --control-fd M`;
it talks over those sockets (see protocol.py). A crash here never takes the server down.

Sync predictors run on the main thread, one at a time, so that a cancel can interrupt
them with a signal even inside `time.sleep` or blocking I/O. Async predictors run as
tasks on an event loop in the main thread; a cancel cancels the task.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import signal
import sys
import tempfile
import threading
import traceback
from typing import Any, Iterator

from ..errors import CancelationException, PredictorError
from ..loader import LoadedPredictor, load_predictor
from ..scope import Scope, enter_scope, exit_scope
from ..types import Path
from .channel import Channel, LogStream, current_prediction_id
from .protocol import (Cancel, Done, HealthcheckRequest, HealthcheckResult, LoadFailed, Metric, Output, Predict,
                       ProtocolError, Request, SetupDone, Shutdown, SignatureLoaded)
from .status import PredictionStatus
from .values import to_python, to_wire

CANCEL_SIGNAL = signal.SIGUSR1


def failure_text(exc: BaseException) -> str:
    """The `error` of a prediction that raised `exc`."""
    if isinstance(exc, SystemExit):  # the worker lives on; say what the predictor did
        return f"SystemExit({exc.code!r}): predict() called sys.exit()"
    return str(exc) or type(exc).__name__


class Worker:
    def __init__(self, channel: Channel, predictor: LoadedPredictor, scratch: str | None = None) -> None:
        self.channel = channel
        self.predictor = predictor
        self.signature = predictor.signature
        self.running: dict[str, Any] = {}  # prediction id -> task (async) or True (sync)
        self.sync_current: str | None = None
        self.sync_cancel_target: str | None = None
        self.scratch = scratch or tempfile.mkdtemp(prefix="cog-worker-")  # output files made from file objects
        self.loop: asyncio.AbstractEventLoop | None = None
        self.early_cancels: set[str] = set()  # async: cancels that overtook their predict message

    def sole_prediction(self) -> str | None:
        return next(iter(self.running)) if len(self.running) == 1 else None

    # ---- setup

    def run_setup(self) -> None:
        setup = self.predictor.setup
        if setup is None:
            return
        kwargs = {}
        if self.signature.setup_takes_weights:
            weights = os.environ.get("COG_WEIGHTS")
            kwargs["weights"] = Path(weights) if weights and "://" not in weights else weights
        result = setup(**kwargs)
        if inspect.isawaitable(result):
            self.loop = asyncio.new_event_loop()  # async predictions later run on this same loop
            self.loop.run_until_complete(result)

    # ---- running one prediction

    def _prepare(self, message: Predict, opened: list[Any]) -> dict[str, Any]:
        given = message.input
        return {spec.name: to_python(spec, given[spec.name], opened)
                for spec in self.signature.inputs if spec.name in given}

    def _scope(self, message: Predict) -> Scope:
        pid = message.id

        def send_metric(name: str, value: Any, mode: str) -> None:
            self.channel.send(Metric(pid, name, value, mode))

        return Scope(pid, message.context, on_metric=send_metric)

    def _send_output(self, pid: str, item: Any) -> None:
        value, files = to_wire(item, self.scratch)
        self.channel.send(Output(pid, value, files))

    def finish(self, pid: str, status: PredictionStatus, output: tuple[Any, list] = (None, []),
               error: str | None = None, scope: Scope | None = None) -> None:
        """Report the prediction's end (after what it printed)."""
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, LogStream):
                stream.flush_prediction(pid)
        self.running.pop(pid, None)
        metrics = dict(scope.metrics) if scope else {}
        try:
            self.channel.send(Done(pid, status, output[0], error, metrics, output[1]))
        except (TypeError, ValueError) as exc:  # metrics or output that JSON cannot carry
            self.channel.send(Done(pid, PredictionStatus.FAILED, error=f"the prediction's result cannot be sent: {exc}"))

    def run_sync(self, message: Predict) -> None:
        pid = message.id
        scope = self._scope(message)
        token, opened = enter_scope(scope), []
        id_token = current_prediction_id.set(pid)
        self.running[pid] = True
        self.sync_current = pid
        try:
            if self.sync_cancel_target == pid:  # canceled before it started
                raise CancelationException()
            result = self.predictor.predict(**self._prepare(message, opened))
            if self.signature.is_iterator or inspect.isgenerator(result):
                for item in result:
                    self._send_output(pid, item)
                output = (None, [])
            else:
                output = to_wire(result, self.scratch)
            self.sync_current = None
            self.finish(pid, PredictionStatus.SUCCEEDED, output, scope=scope)
        except CancelationException:
            self.sync_current = None
            self.finish(pid, PredictionStatus.CANCELED, scope=scope)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the predictor's failure is reported, not raised
            self.sync_current = None
            traceback.print_exc(file=sys.stderr)
            self.finish(pid, PredictionStatus.FAILED, error=failure_text(exc), scope=scope)
        finally:
            self.sync_current = None
            for handle in opened:
                handle.close()
            current_prediction_id.reset(id_token)
            exit_scope(token)

    async def run_async(self, message: Predict) -> None:
        pid = message.id
        scope = self._scope(message)
        enter_scope(scope)  # each task runs in its own context copy
        current_prediction_id.set(pid)
        opened: list[Any] = []
        try:
            result = self.predictor.predict(**self._prepare(message, opened))
            output: tuple[Any, list] = (None, [])
            if inspect.isasyncgen(result) or hasattr(result, "__anext__"):
                async for item in result:
                    self._send_output(pid, item)
            elif inspect.isgenerator(result):
                for item in result:
                    self._send_output(pid, item)
            else:
                if inspect.isawaitable(result):
                    result = await result
                output = to_wire(result, self.scratch)
            self.finish(pid, PredictionStatus.SUCCEEDED, output, scope=scope)
        except (asyncio.CancelledError, CancelationException):
            self.finish(pid, PredictionStatus.CANCELED, scope=scope)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - asyncio would let SystemExit stop the loop
            traceback.print_exc(file=sys.stderr)
            self.finish(pid, PredictionStatus.FAILED, error=failure_text(exc), scope=scope)
        finally:
            for handle in opened:
                handle.close()

    # ---- user healthcheck

    def run_healthcheck(self, request_id: int) -> None:
        """Call the predictor's healthcheck() on its own thread, so a busy predictor still answers."""

        def check() -> None:
            try:
                result = self.predictor.target.healthcheck()
                if inspect.isawaitable(result) and self.loop is not None and self.loop.is_running():
                    # On the predictions' own loop: the check may use what setup() bound to it.
                    result = asyncio.run_coroutine_threadsafe(result, self.loop).result()
                elif inspect.isawaitable(result):
                    result = asyncio.run(result)
                ok = result is not False
                error = None if ok else "user-defined healthcheck returned False"
            except Exception as exc:  # noqa: BLE001
                ok, error = False, f"user-defined healthcheck raised {type(exc).__name__}: {exc}"
            self.channel.send(HealthcheckResult(request_id, ok, error))

        threading.Thread(target=check, name="cog-healthcheck", daemon=True).start()

    # ---- cancel

    def on_cancel_signal(self, signum: int, frame: Any) -> None:
        if self.channel.main_sending:
            self.channel.deferred = self._cancel_now
        else:
            self._cancel_now()

    def _cancel_now(self) -> None:
        if self.sync_current is not None and self.sync_current == self.sync_cancel_target:
            self.sync_cancel_target = None
            raise CancelationException()

    def request_sync_cancel(self, pid: str) -> None:
        # Remembered even when the prediction has not started yet: run_sync checks it first.
        self.sync_cancel_target = pid
        if self.sync_current == pid:
            signal.pthread_kill(threading.main_thread().ident, CANCEL_SIGNAL)  # type: ignore[arg-type]


def _requests(channel: Channel) -> Iterator[Request]:
    """The server's requests until it closes the socket or says shutdown. A malformed one is a bug on the
    server's side that no answer could fix: say what it was and end the worker (the server notices)."""
    while True:
        try:
            message = channel.receive()
        except ProtocolError as exc:
            print(f"cog worker: exiting, the server sent a malformed request: {exc}", file=sys.__stderr__, flush=True)
            os._exit(1)
        if message is None or isinstance(message, Shutdown):
            return
        yield message


def _serve_sync(worker: Worker, channel: Channel) -> None:
    """Predictions are read and run right here on the main thread: no hand-off between threads."""
    signal.signal(CANCEL_SIGNAL, worker.on_cancel_signal)
    for message in _requests(channel):
        if isinstance(message, Predict):
            try:
                worker.run_sync(message)
            except CancelationException:  # a cancel signal that landed just after the prediction ended
                pass


def _serve_async(worker: Worker, channel: Channel, loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    stopped = asyncio.Event()

    def dispatch(message: Predict) -> None:
        pid = message.id
        if pid in worker.early_cancels:
            worker.early_cancels.discard(pid)
            worker.finish(pid, PredictionStatus.CANCELED)
        else:
            task = worker.running[pid] = loop.create_task(worker.run_async(message))
            task.add_done_callback(lambda t: canceled_before_start(t, pid))

    def canceled_before_start(task: asyncio.Task, pid: str) -> None:
        # A task canceled before its first step never runs run_async's own handler.
        if task.cancelled() and pid in worker.running:
            worker.finish(pid, PredictionStatus.CANCELED)

    def read() -> None:
        for message in _requests(channel):
            if isinstance(message, Predict):
                loop.call_soon_threadsafe(dispatch, message)
        loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=read, name="cog-worker-reader", daemon=True).start()
    loop.run_until_complete(stopped.wait())


def _serve_control(worker: Worker, control: Channel, loop: asyncio.AbstractEventLoop | None) -> None:
    """Cancel and healthcheck requests arrive on their own socket, read by this thread,
    so they are heard while the main thread is busy predicting."""

    def cancel_task(pid: str) -> None:
        if (task := worker.running.get(pid)) is not None:
            task.cancel()
        else:  # the predict message may still be on its way through the other socket
            worker.early_cancels.add(pid)

    def read() -> None:
        for message in _requests(control):
            if isinstance(message, HealthcheckRequest):
                worker.run_healthcheck(message.id)
            elif isinstance(message, Cancel) and loop is None:
                worker.request_sync_cancel(message.id)
            elif isinstance(message, Cancel):
                loop.call_soon_threadsafe(cancel_task, message.id)

    threading.Thread(target=read, name="cog-worker-control", daemon=True).start()


def _flush_logs() -> None:
    """Send setup's unfinished log lines before the event that ends setup."""
    sys.stdout.flush()
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cog.server.worker")
    parser.add_argument("--predictor", required=True)
    parser.add_argument("--entry", choices=("predict", "train"), default="predict",
                        help="the method to serve: run/predict, or train (Cog's training interface)")
    parser.add_argument("--fd", type=int, required=True, help="socket for predictions and all events")
    parser.add_argument("--control-fd", type=int, required=True, help="socket for cancel and healthcheck")
    parser.add_argument("--scratch", help="directory for output files (the server removes it)")
    args = parser.parse_args(argv)
    channel, control = Channel(args.fd), Channel(args.control_fd)

    class _Early:  # stand-in so setup-time prints are tagged before the Worker exists
        def sole_prediction(self) -> None:
            return None

    sys.stdout = LogStream(channel, _Early(), "stdout")  # type: ignore[arg-type,assignment]
    sys.stderr = LogStream(channel, _Early(), "stderr")  # type: ignore[arg-type,assignment]
    try:
        predictor = load_predictor(args.predictor, entry=args.entry)
    except PredictorError as exc:
        _flush_logs()
        channel.send(LoadFailed(str(exc)))
        return 1
    except BaseException:  # noqa: BLE001 - an import error in the model is a setup failure
        _flush_logs()
        channel.send(LoadFailed(traceback.format_exc()))
        return 1
    worker = Worker(channel, predictor, args.scratch)
    sys.stdout.worker = sys.stderr.worker = worker  # type: ignore[attr-defined]
    channel.send(SignatureLoaded(predictor.signature.to_json()))
    try:
        worker.run_setup()
    except BaseException:  # noqa: BLE001
        _flush_logs()
        channel.send(SetupDone(False, traceback.format_exc()))
        return 1
    gc.freeze()  # the loaded model's objects stay put: later collections need not walk them
    _flush_logs()
    channel.send(SetupDone(True))
    if predictor.signature.is_async:
        loop = worker.loop = worker.loop or asyncio.new_event_loop()
        _serve_control(worker, control, loop)
        _serve_async(worker, channel, loop)
    else:
        _serve_control(worker, control, None)
        _serve_sync(worker, channel)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown: predictors' threads must not keep us alive
