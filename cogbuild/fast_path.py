"""The two answers that must come at once — `push REF` of an unchanged image and `lock --check` on a
current lock — given before click and the CLI's modules load (issue 15).

Only these command lines are read here: any of `-q`, `--quiet`, `--debug`, then `push [REF] [--insecure]`
or `lock --check [DIRECTORY]`, in any order after the command's name. Anything else, and any of these whose answer is not
the quick one (a changed image, a stale lock, an error of any kind), goes to the click CLI unchanged,
which does the work from the start and speaks for itself. Both answers come from the same functions the
commands call (push_record.unchanged_push, Project.check_lock), and nothing here writes a file, so this
path prints what the full one would and never anything else.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

GLOBAL_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--debug": "debug"}
# command -> (options it must have, options it may have, how many operands): `push [REF] [--insecure]`,
# `lock --check [DIRECTORY]`.
COMMANDS = {"push": (frozenset(), frozenset({"--insecure"}), (0, 1)),
            "lock": (frozenset({"--check"}), frozenset({"--check"}), (0, 1))}


class CommandLine(NamedTuple):
    command: str  # "push" or "lock"
    quiet: bool
    operand: str = ""  # push: REF ("": cog.yaml's image); lock: DIRECTORY ("": the current one)
    insecure: bool = False


def answer(argv: list[str]) -> bool:
    """Print the answer to `argv` when it is one of the quick ones; False: hand `argv` to click."""
    line = parse(argv)
    if line is None:
        return False
    try:
        said = _push(line) if line.command == "push" else _lock_check(line)
    except Exception:  # click runs the command again and reports the error its own way
        return False
    if said is None:
        return False
    warnings, result = said  # printed only once the answer is whole, so a hand-over repeats nothing
    if not line.quiet:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    print(result, flush=True)
    return True


def parse(argv: list[str]) -> CommandLine | None:
    """The command line, when it is one this path reads; None for anything else."""
    flags = []
    while argv and argv[0] in GLOBAL_FLAGS:
        flags.append(GLOBAL_FLAGS[argv[0]])
        argv = argv[1:]
    if not argv or argv[0] not in COMMANDS:
        return None
    command, rest = argv[0], argv[1:]
    options = [a for a in rest if a.startswith("-")]
    operands = [a for a in rest if not a.startswith("-")]
    required, allowed, count = COMMANDS[command]
    if not (required <= set(options) <= allowed and len(set(options)) == len(options) and len(operands) in count):
        return None
    operand = operands[0] if operands else ""
    return CommandLine(command, "quiet" in flags, operand, "--insecure" in options)


def _push(line: CommandLine) -> tuple[list[str], str] | None:
    """An unchanged push's warnings and result, or None when the push has work to do."""
    from .push_record import push_options, read_record, record_name, record_store, unchanged_push
    from .settings import read_environment

    settings = read_environment()
    if settings.sign_key:  # a signed push opens its key first, which needs the full command
        return None
    record = read_record(record_store(settings), record_name(None, line.operand or None, line.insecure))
    pushed = unchanged_push(record, settings, push_options(), line.insecure)
    return ([], pushed) if pushed is not None else None


def _lock_check(line: CommandLine) -> tuple[list[str], str]:
    """cog.yaml's warnings and the check's result; a stale lock raises (click reports it)."""
    from .project import Project

    warnings: list[str] = []
    return warnings, Project.load(None, line.operand or ".", warn=warnings.append).check_lock()
