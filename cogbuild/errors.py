"""The one exception type the CLI turns into a clear sentence and a non-zero exit."""


class CogbuildError(Exception):
    """A user-facing failure: the message is one sentence naming what is at fault."""

    exit_code = 1


class UsageError(CogbuildError):
    """Bad input from the user (a file, a key, a flag)."""

    exit_code = 2
