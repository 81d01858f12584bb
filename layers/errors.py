"""The one family of errors the CLI shows as a sentence, defined at the bottom so every package can use it.

    CogbuildError       exit 1: the work failed (a build, a registry, a container, a prediction)
    ├── UsageError      exit 2: bad input from the user (a flag, a file, cog.yaml, a reference, a setting)
    │   └── CogUsageError   the same, in Cog's exact words (printed verbatim)
    └── EnvironmentFailure  exit 1: the machine or network is not as needed; the message says what to do

Anything else that escapes a command is a bug of ours: the CLI exits 70 and --debug shows the traceback.
Messages are one sentence naming what is at fault, starting lower-case, no closing period (the CLI
prefixes "error: " and brings older messages to that style), except Cog's own words, kept verbatim.
"""

from __future__ import annotations


class CogbuildError(Exception):
    """A failure the user can act on: the message is one sentence naming what is at fault."""

    exit_code = 1
    verbatim = False  # True: another tool's exact wording (Cog's), which scripts may match; printed as is


class UsageError(CogbuildError):
    """Bad input from the user (a file, a key, a flag, an environment variable)."""

    exit_code = 2


class CogUsageError(UsageError):
    """Bad input that Cog reports with a message of its own: the same words, so scripts keep working."""

    verbatim = True


class EnvironmentFailure(CogbuildError):
    """A tool, a host or disk space that is missing or unreachable; the sentence ends with what to do."""

    exit_code = 1
