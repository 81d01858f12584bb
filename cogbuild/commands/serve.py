"""cogbuild serve: the model's HTTP API on this host, from its directory, no image needed."""

from __future__ import annotations

import click

from ..project import Project
from ..serving import exec_server, warn_weights_on_host


@click.command("serve")
@click.argument("directory", required=False, default=".")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", default=5000, show_default=True, type=int)
@click.option("--upload-url", metavar="URL",
              help="PUT output files to URL<name> and return the URLs they answer with, instead of data URIs "
                   "(as Cog's --upload-url).")
def command(directory: str, host: str, port: int, upload_url: str | None) -> None:
    """Serve the Cog HTTP API for the model in DIRECTORY until interrupted.

    \b
    Example:
      cogbuild serve examples/hello --port 5000 &
      curl -s -XPOST localhost:5000/predictions -H 'Content-Type: application/json' \\
           -d '{"input": {"text": "world"}}'
    """
    config = Project.load(None, directory).config
    warn_weights_on_host(config)
    exec_server(config, host, port, upload_url)
