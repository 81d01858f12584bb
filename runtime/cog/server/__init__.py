"""Cog's HTTP prediction API, served by aiohttp, with the predictor in a worker process.

A map of this package, in the order a request travels:

- http.py        routes and `main()` (`python -m cog.server.http`): parses requests, answers them; one
                 middleware turns any failure into an answer and releases a slot the request reserved
- service.py     predictions from request to response: admission (slots, 409/503), validation,
                 input files, timeouts, cancel, output files, webhooks, shutdown
- validation.py  the request's `input` against the predictor's signature (422 details)
- files.py       input URLs/data URIs to temp files (size and time limits); outputs to data URIs/uploads
- urls.py        the one URL policy (syntax, denied and allowed addresses) and the one client session
                 for everything the server fetches or sends: input files, webhooks, uploads
- runner.py      the server's handle on the worker process: spawn, send, receive events, notice death
- protocol.py    the messages between server and worker (one dataclass each) and the one place that
                 encodes and checks them as JSON lines
- status.py      the statuses as `str` enums: a prediction's, and /health-check's
- worker.py      the worker process (`python -m cog.server.worker`): loads the predictor, runs setup()
                 and predictions, honours cancel
- channel.py     the worker's sockets, and the streams that turn its prints into log events
- values.py      inputs to Python objects and outputs to JSON, inside the worker
- prediction.py  one prediction's state and its JSON form
- webhooks.py    throttled intermediate webhooks and a retried terminal one

Nothing here is imported by `import cog`; the SDK stays cheap to import.
"""
