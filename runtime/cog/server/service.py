"""Predictions from request to response: validate, fetch files, run in the worker, shape the output.

The HTTP layer (http.py) turns requests into calls here and results into responses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import sys
import tempfile
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from . import files
from .files import Fetcher, InputFileError
from ..signature import Signature
from .prediction import SECRET_MASK, Prediction, StreamHistory, now_iso
from .protocol import Done, Metric, Output, OutputFile
from .runner import WorkerProcess
from .status import Health, PredictionStatus
from .urls import UrlError, UrlPolicy, policed_session, url_problem
from .validation import error, validate_input
from .webhooks import WebhookSender

# Sending an output file: the upload failed or was refused, or the worker named a file it may not.
_SEND_ERRORS = (OSError, aiohttp.ClientError, asyncio.TimeoutError, UrlError, ValueError)


class Refused(Exception):
    """A request the service will not run; carries the HTTP status and body to answer with."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status, self.body = status, body


@dataclass
class Settings:
    predictor_ref: str
    max_concurrency: int | None = None  # None: from the predictor (@cog.concurrent) or 1
    upload_url: str | None = None
    predict_timeout: float | None = None
    shutdown_grace: float = 30.0
    cancel_grace: float = 1.0
    healthcheck_timeout: float = 5.0
    restart_dead_worker: bool = False  # else a dead worker leaves the server DEFUNCT
    train_ref: str | None = None  # cog.yaml's `train:`, served at /trainings
    setup_timeout: float | None = None  # None or 0: setup() may take as long as it takes
    stream_history: int = 1024  # events kept per prediction for a late server-sent-events client
    stream_all: bool = False  # server-sent events for any model, not only @cog.streaming ones

    @classmethod
    def from_env(cls, predictor_ref: str, upload_url: str | None = None, train_ref: str | None = None) -> Settings:
        """Settings from COG_* variables; a malformed value raises ValueError naming the variable."""
        upload_url = upload_url or os.environ.get("COG_UPLOAD_URL") or None
        if upload_url and (problem := url_problem(upload_url)):
            raise ValueError(f"the upload URL (--upload-url or COG_UPLOAD_URL): {problem}")
        return cls(
            predictor_ref=predictor_ref,
            train_ref=train_ref or None,
            setup_timeout=env_number("COG_SETUP_TIMEOUT", float, None, minimum=0) or None,
            stream_history=env_number("COG_STREAM_HISTORY_CAPACITY", int, 1024, minimum=0),
            stream_all=_env_flag("COG_STREAM_ALL"),
            max_concurrency=env_number("COG_MAX_CONCURRENCY", int, None, minimum=1),
            upload_url=upload_url,
            predict_timeout=env_number("COG_PREDICT_TIMEOUT", float, None, minimum=0),
            shutdown_grace=env_number("COG_SHUTDOWN_GRACE", float, 30.0, minimum=0),
            cancel_grace=env_number("COG_CANCEL_GRACE", float, 1.0, minimum=0),
            healthcheck_timeout=env_number("COG_HEALTHCHECK_TIMEOUT", float, 5.0, minimum=0),
            restart_dead_worker=_env_flag("COG_RESTART_DEAD_WORKER"),
        )


def _env_flag(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text in ("", "0", "false", "no"):
        return False
    if text in ("1", "true", "yes"):
        return True
    raise ValueError(f"{name}={text!r} is not one of 1, true, yes, 0, false, no")


def env_number(name: str, cast: type, default: Any, *, minimum: float) -> Any:
    """A number from the environment variable `name` (`default` when unset); ValueError naming it if malformed."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "an integer" if cast is int else "a number"
        raise ValueError(f"{name}={text!r} is not {kind} of at least {minimum:g}")
    return value


RECENT_LIMIT = 1000  # finished predictions remembered, so that a late or repeated cancel is not a 404


class PredictionService:
    """Predictions (or, with entry="train", trainings) run by one worker process."""

    def __init__(self, settings: Settings, entry: str = "predict") -> None:
        self.settings = settings
        self.entry = entry
        self.active: dict[str, Prediction] = {}
        self.recently_finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.shutting_down = False
        self.hurry = asyncio.Event()  # set by a second SIGTERM/SIGINT: cancel in-flight work now
        self.temp_root = tempfile.mkdtemp(prefix="cog-server-")  # inputs and worker outputs; removed at exit
        ref = settings.train_ref if entry == "train" else settings.predictor_ref
        assert ref is not None
        self.worker = WorkerProcess(ref, on_output=self._on_output, on_done=self._on_done, on_log=self._on_log,
                                    on_metric=self._on_metric, cancel_grace=settings.cancel_grace,
                                    restart_dead_worker=settings.restart_dead_worker, scratch_root=self.temp_root,
                                    entry=entry, setup_timeout=settings.setup_timeout)
        self.url_policy = UrlPolicy.from_env()  # for every URL the server fetches from or sends to
        self.session: aiohttp.ClientSession | None = None
        self.webhooks: WebhookSender | None = None
        self.fetcher: Fetcher | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.session = policed_session(self.url_policy)
        self.webhooks = WebhookSender(self.session, self.url_policy)
        self.fetcher = Fetcher(self.url_policy, self.session)
        await self.worker.start()
        explain = asyncio.ensure_future(self._explain_concurrency())
        self._tasks.add(explain)
        explain.add_done_callback(self._tasks.discard)

    async def _explain_concurrency(self) -> None:
        """Say once, in the server log, when a concurrency setting cannot apply."""
        await self.worker.ready.wait()
        signature, wanted = self.worker.signature, self.settings.max_concurrency
        if signature is not None and not signature.is_async and wanted and wanted > 1:
            print(f"cog: COG_MAX_CONCURRENCY={wanted} does not apply: predict() is not async, "
                  "so predictions run one at a time", file=sys.stderr, flush=True)

    @property
    def signature(self) -> Signature | None:
        """The predictor's inputs and outputs; None until its worker has loaded it."""
        return self.worker.signature

    @property
    def slots(self) -> int:
        signature = self.worker.signature
        if signature is None or not signature.is_async:
            return 1  # sync predictors run one at a time
        return self.settings.max_concurrency or signature.max_concurrency

    async def health(self) -> dict[str, Any]:
        """/health-check's body: status, setup's report, worker restarts, and why the predictor's own
        healthcheck() failed if it did."""
        status, problem = await self._health_status()
        body = {"status": status, "setup": self.worker.setup, "worker_restarts": self.worker.restarts}
        if problem is not None:
            body["user_healthcheck_error"] = problem
        return body

    async def _health_status(self) -> tuple[Health, str | None]:
        state = self.worker.state
        signature = self.worker.signature
        if state == Health.READY and signature is not None and signature.has_healthcheck:
            problem = await self.worker.healthcheck(self.settings.healthcheck_timeout)
            if problem is not None:
                return Health.UNHEALTHY, problem
        if state == Health.READY and len(self.active) >= self.slots:
            return Health.BUSY, None
        return state, None

    def events_refusal(self) -> str | None:
        """Why this service offers no server-sent events, or None when it does: the model opted in with
        @cog.streaming (as Cog asks), or the server streams everything (COG_STREAM_ALL)."""
        if self.settings.stream_all:
            return None
        if self.entry == "train":
            return ("Trainings do not stream: ask for JSON, with Prefer: respond-async "
                    "and a webhook to follow a long one.")
        signature = self.worker.signature
        if signature is not None and not signature.streaming:
            return ("This model does not support streaming responses: decorate its predict() "
                    "with @cog.streaming to offer server-sent events.")
        return None

    def find_active(self, prediction_id: str) -> Prediction | None:
        """The prediction with this ID if it has not finished."""
        return self.active.get(prediction_id)

    def input_directory(self, prediction: Prediction) -> str:
        """A new directory for the prediction's input files, removed by `cleanup`."""
        directory = tempfile.mkdtemp(dir=self.temp_root)
        prediction.temp_paths.append(directory)
        return directory

    # ---------------------------------------------------------------- creating predictions

    def _admit(self) -> None:
        if self.shutting_down:
            raise Refused(503, {"detail": "the server is shutting down"})
        state = self.worker.state
        if state == Health.STARTING:
            raise Refused(503, {"detail": "setup has not finished yet"})
        if state == Health.SETUP_FAILED:
            raise Refused(503, {"detail": "setup failed; see /health-check for its logs"})
        if state == Health.DEFUNCT:
            raise Refused(503, {"detail": "the worker process died; the server must be restarted"})
        if len(self.active) >= self.slots:
            raise Refused(409, {"detail": "all prediction slots are busy"})

    def create(self, body: Any, path_id: str | None = None) -> tuple[Prediction, dict[str, Any]]:
        """Validate a request and reserve a slot; returns the prediction and its complete input."""
        if not isinstance(body, dict):
            raise Refused(422, {"detail": [{"loc": ["body"], "msg": "value is not a valid dict",
                                            "type": "type_error.dict"}]})
        if errors := _request_errors(body, self.url_policy):
            raise Refused(422, {"detail": errors})
        if path_id is not None and body.get("id") not in (None, path_id):
            raise Refused(422, {"detail": [{"loc": ["body", "id"], "type": "value_error",
                                            "msg": "prediction ID in the body does not match the ID in the path"}]})
        prediction_id = path_id or body.get("id") or uuid.uuid4().hex
        if prediction_id in self.active:
            raise Refused(202, self.active[prediction_id].to_json())
        self._admit()
        signature = self.worker.signature
        assert signature is not None
        values, errors = validate_input(signature, body.get("input"))
        if errors:
            raise Refused(422, {"detail": errors})
        secrets, given = _hide_secrets(signature, values, body.get("input") or {})
        prediction = Prediction(
            id=str(prediction_id), input=given, webhook=body.get("webhook"),
            webhook_events_filter=tuple(body.get("webhook_events_filter") or ("start", "output", "logs", "completed")),
            output_file_prefix=body.get("output_file_prefix"), context=dict(body.get("context") or {}),
            created_at=body.get("created_at") or None, secrets=secrets, streams=signature.is_iterator,
            history=StreamHistory(self.settings.stream_history),
        )
        prediction.created_at = prediction.created_at or now_iso()
        self.active[prediction.id] = prediction
        return prediction, values

    async def fetch_inputs(self, prediction: Prediction, values: dict[str, Any],
                           local: dict[str, Any] | None = None) -> dict[str, Any]:
        """Replace file URLs with the paths of downloaded local files; `local` are already on disk."""
        signature = self.worker.signature
        assert signature is not None and self.fetcher is not None
        wire = dict(values)
        directory = None  # made only when needed: directory churn is slow on some filesystems
        for spec in signature.inputs:
            if local and spec.name in local:
                wire[spec.name] = local[spec.name]
            elif spec.is_file and values.get(spec.name) is not None:
                if directory is None:
                    directory = self.input_directory(prediction)
                urls = values[spec.name] if spec.is_list else [values[spec.name]]
                try:
                    fetched = [await self.fetcher.fetch(url, directory) for url in urls]
                except InputFileError as exc:
                    raise Refused(422, {"detail": [error(spec.name, str(exc), "value_error.file")]}) from None
                wire[spec.name] = fetched if spec.is_list else fetched[0]
        return wire

    def run(self, prediction: Prediction, values: dict[str, Any], *, prefetched: dict[str, Any] | None = None) -> None:
        """Run in the background (fetching input files first unless `prefetched` has them);
        the prediction's `done` event fires at the end, whatever happens."""
        prediction.scheduled = True
        task = asyncio.ensure_future(self._run_guarded(prediction, values, prefetched))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_guarded(self, prediction: Prediction, values: dict[str, Any],
                           prefetched: dict[str, Any] | None) -> None:
        """A bug of ours fails this prediction instead of leaving its client waiting forever."""
        try:
            await self._run(prediction, values, prefetched)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            self.worker.forget(prediction)
            if not prediction.is_terminal:
                await self._finish(prediction, PredictionStatus.FAILED, f"internal server error: {type(exc).__name__}: {exc}")

    async def _run(self, prediction: Prediction, values: dict[str, Any], prefetched: dict[str, Any] | None) -> None:
        try:
            wire = prefetched if prefetched is not None else await self.fetch_inputs(prediction, values)
        except Refused as refused:
            await self._finish(prediction, PredictionStatus.FAILED, refused.body["detail"][0]["msg"])
            return
        if prediction.cancel_requested:
            await self._finish(prediction, PredictionStatus.CANCELED)
            return
        prediction.start()
        prediction.notify("start", {"id": prediction.id, "status": prediction.status})
        self._webhook(prediction, "start")  # before any output can arrive
        try:
            await self.worker.submit(prediction, wire)
        except (ConnectionError, RuntimeError) as exc:
            await self._finish(prediction, PredictionStatus.FAILED, f"the worker is not available ({exc})")
            return
        timeout = self.settings.predict_timeout
        if timeout is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(prediction.done.wait()), timeout)
        except asyncio.TimeoutError:
            prediction.error = f"the prediction exceeded the timeout of {timeout:g} seconds"
            await self.worker.cancel(prediction)

    def abandon(self, prediction: Prediction) -> None:
        """Release a prediction that was never handed to `run` (its request was refused or failed)."""
        if not prediction.scheduled:
            self.active.pop(prediction.id, None)
            self.cleanup(prediction)

    # ---------------------------------------------------------------- events

    async def _convert_files(self, prediction: Prediction, value: Any, output_files: list[OutputFile]) -> Any:
        """Put each output file the worker listed (see protocol.py) in its place in `value`,
        as a data URI or the URL it was uploaded to; the file is removed once sent."""
        for entry in output_files:
            path = self.worker.scratch_file(entry["path"])
            try:
                sent = await self._send_file(prediction, path)
            finally:
                _remove_output_file(path)
            value = _place(value, entry["at"], sent)
        return value

    async def _send_file(self, prediction: Prediction, path: str) -> str:
        base = prediction.output_file_prefix or self.settings.upload_url
        if base:
            assert self.session is not None
            return await files.upload(self.session, self.url_policy, path, base)
        return await files.in_thread(files.data_uri, path)

    async def _on_output(self, prediction: Prediction, event: Output) -> None:
        try:
            value = await self._convert_files(prediction, event.value, event.files)
        except _SEND_ERRORS as exc:
            prediction.error = f"an output file could not be sent: {exc}"
            return
        if not isinstance(prediction.output, list):
            prediction.output = []
        prediction.output.append(value)
        prediction.notify("output", {"chunk": value, "index": len(prediction.output) - 1})
        self._webhook(prediction, "output")

    def _on_log(self, prediction: Prediction, text: str, source: str) -> None:
        prediction.notify("log", {"source": source, "data": text})
        self._webhook(prediction, "logs")

    def _on_metric(self, prediction: Prediction, metric: Metric) -> None:
        prediction.notify("metric", {"name": metric.name, "value": metric.value, "mode": metric.mode})

    async def _on_done(self, prediction: Prediction, event: Done) -> None:
        status, error_text, output_files = event.status, event.error, event.files
        if prediction.raw_files and [entry["at"] for entry in output_files] == [[]]:
            try:  # the seed's /predict answers with the file itself
                prediction.output_file = self.worker.scratch_file(output_files[0]["path"])
                prediction.temp_paths.append(os.path.dirname(prediction.output_file))
            except ValueError as exc:
                status, error_text = PredictionStatus.FAILED, str(exc)
        elif event.output is not None or output_files:
            try:
                prediction.output = await self._convert_files(prediction, event.output, output_files)
            except _SEND_ERRORS as exc:
                status, error_text = PredictionStatus.FAILED, f"an output file could not be sent: {exc}"
        prediction.metrics.update(event.metrics)
        if prediction.error and status != PredictionStatus.SUCCEEDED:  # a timeout explains the cancel
            status, error_text = PredictionStatus.FAILED, prediction.error
        elif prediction.error and not error_text:  # an output file failed to upload
            status, error_text = PredictionStatus.FAILED, prediction.error
        await self._finish(prediction, status, error_text)

    async def _finish(self, prediction: Prediction, status: PredictionStatus, error_text: str | None = None) -> None:
        try:
            prediction.finish(status, error_text)
            if not prediction.raw_files:  # the seed's /predict answers with a file: it cleans up itself
                self.cleanup(prediction)
            prediction.notify("completed", prediction.to_json())
            self._webhook(prediction, "completed")
        finally:  # whatever went wrong above, the slot is free and the client stops waiting
            self.active.pop(prediction.id, None)
            self.recently_finished[prediction.id] = None
            if len(self.recently_finished) > RECENT_LIMIT:
                self.recently_finished.popitem(last=False)
            prediction.done.set()

    def cleanup(self, prediction: Prediction) -> None:
        """Remove the prediction's downloaded or uploaded input files."""
        for path in prediction.temp_paths:
            shutil.rmtree(path, ignore_errors=True)
        prediction.temp_paths.clear()

    def _webhook(self, prediction: Prediction, event: str) -> None:
        if self.webhooks is not None:
            self.webhooks.notify(prediction, event)

    # ---------------------------------------------------------------- cancel and shutdown

    async def cancel(self, prediction_id: str) -> bool:
        """False when no prediction has this ID; cancelling one that already finished, or
        again, changes nothing and is not an error (as in Cog)."""
        prediction = self.active.get(prediction_id)
        if prediction is None:
            return prediction_id in self.recently_finished
        if prediction.cancel_requested:
            return True  # one cancel at a time: two could each kill and respawn the worker
        if prediction.status == PredictionStatus.STARTING:
            prediction.cancel_requested = True
        else:
            task = asyncio.ensure_future(self.worker.cancel(prediction))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def shutdown(self) -> None:
        """Stop taking work, let in-flight predictions finish (then cancel them), flush webhooks."""
        self.shutting_down = True
        if self.active:
            finished = asyncio.ensure_future(asyncio.gather(*(p.done.wait() for p in self.active.values())))
            hurried = asyncio.ensure_future(self.hurry.wait())
            await asyncio.wait({finished, hurried}, timeout=self.settings.shutdown_grace,
                               return_when=asyncio.FIRST_COMPLETED)
            hurried.cancel()
            if not finished.done():
                await asyncio.gather(*(self.worker.cancel(p) for p in list(self.active.values())))
                finished.cancel()
        if self.webhooks is not None:
            await self.webhooks.drain()
        await self.worker.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.session is not None:
            await self.session.close()
        shutil.rmtree(self.temp_root, ignore_errors=True)


def _request_errors(body: dict[str, Any], policy: UrlPolicy) -> list[dict[str, Any]]:
    """Problems with the request fields around `input`."""
    problems = []

    def problem(key: str, msg: str, kind: str) -> None:
        problems.append({"loc": ["body", key], "msg": msg, "type": kind})

    for key in ("webhook", "output_file_prefix"):
        if (url := body.get(key)) is not None and (why := url_problem(url) or policy.literal_problem(url)):
            problem(key, why, "value_error.url")
    events = body.get("webhook_events_filter")
    if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)
                               or not set(events) <= {"start", "output", "logs", "completed"}):
        problem("webhook_events_filter", "value is not a valid enumeration member; "
                "permitted: 'start', 'output', 'logs', 'completed'", "type_error.enum")
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and all(isinstance(v, str) for v in context.values())):
        problem("context", "context must map names to strings", "type_error.dict")
    for key in ("created_at", "id"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problem(key, "str type expected", "type_error.str")
    return problems


def _hide_secrets(signature: Any, values: dict[str, Any], given: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """(the secret values, to redact from logs; the input as the client sent it, secrets masked)."""
    secrets: list[str] = []
    shown = dict(given)
    for spec in signature.inputs:
        if spec.kind != "secret" or values.get(spec.name) is None:
            continue
        value = values[spec.name]
        secrets += [v for v in (value if spec.is_list else [value]) if v]
        if given.get(spec.name) is not None:
            shown[spec.name] = [SECRET_MASK] * len(value) if spec.is_list else SECRET_MASK
    return secrets, shown


def _place(value: Any, at: list[Any], item: Any) -> Any:
    """`value` with `item` put at the path `at` (keys and indices); ValueError if there is no such place."""
    if not at:
        return item
    try:
        container = value
        for step in at[:-1]:
            container = container[step]
        container[at[-1]] = item
    except (KeyError, IndexError, TypeError):
        raise ValueError("the worker sent an output file without a valid place") from None
    return value


def _remove_output_file(path: str) -> None:
    """Remove a sent output file and the directory the worker made for it."""
    with contextlib.suppress(OSError):
        os.remove(path)
        os.rmdir(os.path.dirname(path))
