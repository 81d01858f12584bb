"""Options that `build` and `push` share, apart from commands/build.py so that an unchanged push need not
import the build modules to read its command line."""

from __future__ import annotations

import click

from ..settings import CACHE_REPO_ENV

cache_option = click.option(
    "--cache", "cache", metavar="REGISTRY/REPO",
    help=f"A registry repository shared by builders as a binary cache (or ${CACHE_REPO_ENV}): layers it has are "
         "used without composing or downloading them; new layers and downloads are uploaded to it.")

secret_option = click.option(
    "--secret", "secrets", multiple=True, metavar="id=NAME,src=FILE",
    help="A file for build.run steps that mount the secret NAME (repeatable); it reaches no layer, lock, log "
         "or cache.")
