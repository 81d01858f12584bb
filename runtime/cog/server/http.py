"""Cog's HTTP prediction API on aiohttp; the predictor runs in a worker process.

    python -m cog.server.http [--host H] [--port P] [--predictor FILE.py:NAME] [--train FILE.py:NAME]
                              [--upload-url URL]

Run it from the model directory. Defaults come from the image's environment: $PORT (else 5000),
$COG_PREDICTOR (else predict.py:Predictor), $COG_TRAIN (cog.yaml's `train:`; /trainings is served
only with it), $COG_MAX_CONCURRENCY, $COG_UPLOAD_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import mimetypes
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .._version import __version__
from ..openapi import openapi_document
from .files import in_thread
from .prediction import Prediction, json_text
from .service import PredictionService, Refused, Settings, env_number
from .status import Health, PredictionStatus
from .validation import coerce_form_value, error

MiB = 1024 * 1024
SERVICE = web.AppKey("service", PredictionService)
TRAINING = web.AppKey("training", PredictionService)  # present when the model has `train:`
STOP = web.AppKey("stop", asyncio.Event)
BODY_TIMEOUT = web.AppKey("body_timeout", float)
RESERVED = "cog.reserved"  # request key: the prediction a request holds a slot for
BODY_BYTES_PER_EXTRA_SECOND = 64 * 1024  # a body's deadline grows as it arrives: big uploads are fine
EVENT_STREAM = "text/event-stream"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json_text(body), status=status, content_type="application/json")


def _service(request: web.Request) -> PredictionService:
    """The predictions' service, or the trainings' for a /trainings route."""
    if request.path.startswith("/trainings"):
        return request.app[TRAINING]
    return request.app[SERVICE]


def _wants_events(request: web.Request) -> bool:
    accepted = request.headers.get("Accept", "").split(",")
    return any(part.split(";")[0].strip() == EVENT_STREAM for part in accepted)


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, {"detail": "the request body is not UTF-8 text"}) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(422, {"detail": [{"loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}",
                                        "type": "value_error.jsondecode"}]}) from None
    except ValueError as exc:  # an integer too long to parse
        raise Refused(422, {"detail": [{"loc": ["body"], "msg": f"JSON decode error: {exc}",
                                        "type": "value_error.jsondecode"}]}) from None
    except RecursionError:
        raise Refused(400, {"detail": "the request body nests too deeply"}) from None


def _reserve(request: web.Request, body: Any, path_id: str | None = None) -> tuple[Prediction, dict]:
    """Validate and take a slot; the middleware releases it unless the prediction was handed to a run."""
    service = _service(request)
    prediction, values = service.create(body, path_id)
    request[RESERVED] = (service, prediction)
    return prediction, values


# ---------------------------------------------------------------- meta routes


async def root(request: web.Request) -> web.Response:
    body = {
        "cog_version": __version__, "openapi_url": "/openapi.json", "healthcheck_url": "/health-check",
        "predictions_url": "/predictions", "predictions_idempotent_url": "/predictions/{prediction_id}",
        "predictions_cancel_url": "/predictions/{prediction_id}/cancel", "shutdown_url": "/shutdown",
    }
    if TRAINING in request.app:
        body.update({"trainings_url": "/trainings", "trainings_idempotent_url": "/trainings/{training_id}",
                     "trainings_cancel_url": "/trainings/{training_id}/cancel"})
    return _json(body)


async def health_check(request: web.Request) -> web.Response:
    """Always 200, as Cog answers; with `?ok=READY,BUSY` a status outside that list answers 503, so a
    probe that reads only the HTTP status (Kubernetes' httpGet) can tell the states apart."""
    body = await request.app[SERVICE].health()
    if TRAINING in request.app:  # the trainer's worker, which has a setup() of its own
        body["training"] = await request.app[TRAINING].health()
        if body["training"]["status"] == Health.STARTING and body["status"] == Health.READY:
            body["status"] = Health.STARTING  # READY once every setup() is over, so clients need not wait twice
    wanted = request.query.get("ok")
    healthy = wanted is None or body["status"] in {part.strip() for part in wanted.split(",")}
    return _json(body, 200 if healthy else 503)


async def openapi(request: web.Request) -> web.Response:
    signature = request.app[SERVICE].signature
    if signature is None:
        return _json({"detail": "the predictor has not been loaded; see /health-check"}, 503)
    training = request.app[TRAINING].signature if TRAINING in request.app else None
    return _json(openapi_document(signature, training))


async def shutdown(request: web.Request) -> web.Response:
    request.app[STOP].set()
    return _json({})


# ---------------------------------------------------------------- predictions


async def create_prediction(request: web.Request) -> web.StreamResponse:
    """POST /predictions, PUT /predictions/{id}, and the same for /trainings."""
    service = _service(request)
    path_id = request.match_info.get("prediction_id")
    wants_events = _wants_events(request)
    if wants_events and (refusal := service.events_refusal()) is not None:
        return _json({"error": refusal}, 406)
    if wants_events and path_id is not None and (running := service.find_active(path_id)) is not None:
        return await _stream_events(request, running)  # a late client gets the story so far, then the rest
    prediction, values = _reserve(request, await _read_json(request), path_id)
    if "respond-async" in request.headers.get("Prefer", "") and not wants_events:
        service.run(prediction, values)
        return _json(prediction.to_json(), 202)
    wire = await service.fetch_inputs(prediction, values)
    if wants_events:
        return await _stream_events(request, prediction, lambda: service.run(prediction, values, prefetched=wire),
                                    cancel_on_disconnect=service)
    service.run(prediction, values, prefetched=wire)
    await prediction.done.wait()
    return _json(prediction.to_json())


async def _stream_events(request: web.Request, prediction: Prediction, start: Callable[[], None] | None = None,
                         cancel_on_disconnect: PredictionService | None = None) -> web.StreamResponse:
    """Server-sent events: `start`, `output` ({"chunk", "index"}), `log`, `metric`, then `completed`
    with the whole response. Events from before this client came are replayed first; if some of them
    are no longer kept, an `error` event says how many and the stream ends."""
    history, dropped, events = prediction.subscribe()
    if start is not None:
        start()
    response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        if dropped:
            await response.write(_sse("error", {"error": "SSE stream replay truncated: older events of this "
                                                         "prediction are no longer kept", "skipped": dropped}))
            return response
        for event, payload in history:
            await response.write(_sse(event, payload))
            if event == "completed":
                return response
        while True:
            event, payload = await events.get()
            await response.write(_sse(event, payload))
            if event == "completed":
                return response
    except ConnectionError:
        if cancel_on_disconnect is not None:
            await cancel_on_disconnect.cancel(prediction.id)  # the client that asked for it went away
        return response
    finally:
        prediction.listeners.remove(events)


def _sse(event: str, payload: Any) -> bytes:
    return f"event: {event}\ndata: {json_text(payload)}\n\n".encode()


async def cancel_prediction(request: web.Request) -> web.Response:
    if await _service(request).cancel(request.match_info["prediction_id"]):
        return _json({})
    return _json({"detail": "no prediction with this ID is running or has run here"}, 404)


# ---------------------------------------------------------------- the seed's form endpoint


async def predict_form(request: web.Request) -> web.StreamResponse:
    """The seed's `POST /predict`: multipart form in, the bare output back."""
    service = request.app[SERVICE]
    signature = service.signature
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError) as exc:
        return _json({"detail": f"the form cannot be read: {getattr(exc, 'message', None) or exc}"}, 400)
    specs = {spec.name: spec for spec in signature.inputs} if signature else {}
    given: dict[str, Any] = {}
    uploads: dict[str, list[web.FileField]] = {}
    for name in set(form):
        spec = specs.get(name)
        values = form.getall(name)
        files = [v for v in values if isinstance(v, web.FileField)]
        if files:
            uploads[name] = files
            # Stand-ins that pass URL validation; the uploaded files replace them below.
            values = ["data:,"] * len(files)
        elif spec is not None:
            values = [coerce_form_value(spec, v) for v in values]
        given[name] = values if spec is not None and spec.is_list else values[-1]
    prediction, values = _reserve(request, {"input": given})
    local = {}
    for name, files in uploads.items():
        if not specs[name].is_file:
            raise Refused(422, {"detail": [error(name, "this input is not a file", "type_error")]})
        saved = [await in_thread(_save_upload, service, prediction, f) for f in files]
        local[name] = saved if specs[name].is_list else saved[-1]
    prediction.raw_files = True
    wire = await service.fetch_inputs(prediction, values, local)
    service.run(prediction, values, prefetched=wire)
    await prediction.done.wait()
    try:
        if prediction.status != PredictionStatus.SUCCEEDED:
            return _json({"error": prediction.error or prediction.status, "logs": prediction.logs}, 500)
        return await _bare_output(prediction)
    finally:
        service.cleanup(prediction)


def _save_upload(service: PredictionService, prediction: Prediction, upload: web.FileField) -> str:
    directory = service.input_directory(prediction)
    name = os.path.basename(upload.filename or "file") or "file"
    path = os.path.join(directory, name)
    with open(path, "wb") as out:
        while chunk := upload.file.read(1024 * 1024):
            out.write(chunk)
    return path


async def _bare_output(prediction: Prediction) -> web.StreamResponse:
    output, path = prediction.output, prediction.output_file
    if path is not None:  # read now: cleanup removes it
        try:
            body = await in_thread(Path(path).read_bytes)
        except OSError as exc:
            return _json({"error": f"the output file cannot be read: {exc.strerror or exc}"}, 500)
        return web.Response(body=body, content_type=mimetypes.guess_type(path)[0] or "application/octet-stream")
    if isinstance(output, str):
        return web.Response(text=output)
    return _json(output)


# ---------------------------------------------------------------- app and main


@web.middleware
async def _answer_every_request(request: web.Request, handler: Any) -> web.StreamResponse:
    """The one place where a request's failure becomes an answer: a refusal as it says, a bug of ours
    as a 500 (with a traceback in the server log). Either way, a slot the request reserved for a
    prediction that was never handed to a run is released, and the body has a deadline."""
    deadline = _BodyDeadline(request, request.app[BODY_TIMEOUT])
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Refused as refused:
        response = _json(refused.body, refused.status)
        if deadline.expired:
            response.force_close()  # the rest of the body is not worth waiting for
        return response
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return _json({"detail": f"internal server error: {type(exc).__name__}: {exc}"}, 500)
    finally:
        deadline.cancel()
        if (reserved := request.get(RESERVED)) is not None:
            service, prediction = reserved
            service.abandon(prediction)


class _BodyDeadline:
    """Fails the reading of a request body that is not complete after `timeout` seconds, plus one
    second per BODY_BYTES_PER_EXTRA_SECOND received: a client dribbling bytes cannot hold a
    connection (or a slot) for long, and a big upload at a fair rate still gets through."""

    def __init__(self, request: web.Request, timeout: float) -> None:
        self.content, self.timeout, self.expired = request.content, timeout, False
        self.handle: asyncio.TimerHandle | None = None
        if request.body_exists and not self.content.is_eof():
            self.loop = asyncio.get_running_loop()
            self.started = self.loop.time()
            self.handle = self.loop.call_at(self.started + timeout, self._check)

    def _check(self) -> None:
        if self.content.is_eof():
            return
        deadline = self.started + self.timeout + self.content.total_bytes / BODY_BYTES_PER_EXTRA_SECOND
        if self.loop.time() < deadline:
            self.handle = self.loop.call_at(deadline, self._check)
            return
        self.expired = True
        self.content.set_exception(Refused(408, {"detail": f"the request body did not arrive within "
                                                            f"{self.timeout:g} seconds"}))

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


def make_app(service: PredictionService, stop: asyncio.Event, max_body: int = 100 * MiB,
             body_timeout: float = 30.0, training: PredictionService | None = None) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[_answer_every_request])
    app[SERVICE], app[STOP], app[BODY_TIMEOUT] = service, stop, body_timeout
    app.router.add_get("/", root)
    app.router.add_get("/health-check", health_check)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/predictions", create_prediction)
    app.router.add_put("/predictions/{prediction_id}", create_prediction)
    app.router.add_post("/predictions/{prediction_id}/cancel", cancel_prediction)
    app.router.add_post("/shutdown", shutdown)
    app.router.add_post("/predict", predict_form)
    if training is not None:
        app[TRAINING] = training
        app.router.add_post("/trainings", create_prediction)
        app.router.add_put("/trainings/{prediction_id}", create_prediction)
        app.router.add_post("/trainings/{prediction_id}/cancel", cancel_prediction)
    return app


async def serve(settings: Settings, host: str, port: int, max_body: int = 100 * MiB,
                body_timeout: float = 30.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    service = PredictionService(settings)
    training = PredictionService(settings, entry="train") if settings.train_ref else None
    services = [service] + ([training] if training is not None else [])

    def on_signal() -> None:  # the first asks for a graceful stop; a second one stops waiting
        if stop.is_set():
            for each in services:
                each.hurry.set()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    for each in services:
        await each.start()
    runner = web.AppRunner(make_app(service, stop, max_body, body_timeout, training), access_log=None,
                           handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await asyncio.gather(*(each.shutdown() for each in services))
        await runner.cleanup()
        raise SystemExit(f"cog: error: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    gc.freeze()  # start-up objects never become garbage; keep collections short (tail latency)
    trains = f" (trainings: {settings.train_ref})" if settings.train_ref else ""
    print(f"cog: serving {settings.predictor_ref}{trains} on http://{host}:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    print("cog: shutting down", file=sys.stderr, flush=True)
    await site.stop()  # no new connections
    await asyncio.gather(*(each.shutdown() for each in services))
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cog.server.http", description="Serve Cog's HTTP prediction API.")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 5000)")
    parser.add_argument("--predictor", default=os.environ.get("COG_PREDICTOR") or "predict.py:Predictor",
                        help="module and class, like predict.py:Predictor (default: $COG_PREDICTOR)")
    parser.add_argument("--train", default=os.environ.get("COG_TRAIN") or None,
                        help="serve this training entry (train.py:train) at /trainings (default: $COG_TRAIN)")
    parser.add_argument("--upload-url", default=None, help="PUT output files here instead of inlining them")
    args = parser.parse_args(argv)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        settings = Settings.from_env(args.predictor, args.upload_url, args.train)
        max_body = env_number("COG_MAX_BODY_BYTES", int, 100 * MiB, minimum=1)
        body_timeout = env_number("COG_BODY_TIMEOUT", float, 30.0, minimum=0.001)
        port = args.port if args.port is not None else env_number("PORT", int, 5000, minimum=0)
    except ValueError as exc:
        print(f"cog: error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, args.host, port, max_body, body_timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
