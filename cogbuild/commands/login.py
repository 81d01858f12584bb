"""cogbuild login: check credentials against a registry and store them the way `docker login` does."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from ..registry.login import login
from ..registry.reference import DOCKER_HUB
from ..ui import result


@click.command("login")
@click.argument("registry", required=False, default=DOCKER_HUB)
@click.option("-u", "--username", help="Account name (asked for when missing).")
@click.option("-p", "--password", help="Password or token (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password or token from standard input.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
def command(registry: str, username: str | None, password: str | None, password_stdin: bool,
            insecure: bool) -> None:
    """Log in to REGISTRY (default docker.io); credentials go to ~/.docker/config.json or its credsStore.

    \b
    Examples:
      cogbuild login ghcr.io -u me --password-stdin < token.txt
      cogbuild login 127.0.0.1:5000 -u tester
    """
    if password_stdin:
        if password:
            raise UsageError("use either --password or --password-stdin, not both")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if not password:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise UsageError("login needs a username and a password")
    where = login(registry, username, password, insecure=insecure)
    result(f"Login succeeded: credentials for {registry} stored in {where}")
