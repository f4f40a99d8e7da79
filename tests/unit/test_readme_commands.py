"""Every shell line the README shows names something that exists on a fresh clone after ``make demo``.

Each line of a ```sh block (continuations joined, comments and leading ``VAR=value`` dropped) must start with:

- ``make TARGET``: a target of the Makefile;
- ``source .venv/bin/activate``: the environment ``make`` creates;
- a command of the project's environment (``tracedq``, ``dramatiq``, ``python`` ...), only after the README
  told the reader to activate it: a console script in the venv's ``bin``; ``tracedq`` subcommands must exist,
  and ``python -m MODULE`` must name an importable module;
- ``uv run X``: only if ``uv`` is on this machine's PATH (``make`` may have put it in ``~/.local/bin``), and X
  as above;
- a system tool: ``cp`` and ``curl`` must be on PATH; ``docker`` and ``kubectl`` are the documented
  prerequisites of their sections.

The README once showed ``uv run ...`` and bare ``tracedq ...`` with neither on PATH after ``make demo``.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import sys
from pathlib import Path

import click
import pytest

from cli.main import tracedq

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
ACTIVATE = "source .venv/bin/activate"
PREREQUISITES = {"docker", "kubectl"}  # the compose and Kubernetes sections say they need them
SYSTEM_TOOLS = {"cp", "curl"}


def readme_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line number, words) of every command in the ```sh blocks, in order."""
    commands: list[tuple[int, list[str]]] = []
    in_block, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_block = line.strip() == "```sh"
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]
        if words:
            commands.append((start, words))
    return commands


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return {match.group(1) for match in re.finditer(r"^([A-Za-z][\w-]*):", makefile, flags=re.M)}


def _tracedq_problem(args: list[str]) -> str | None:
    """Whether ``tracedq ARGS`` names an existing (sub)command."""
    command: click.Command = tracedq
    for word in args:
        if not isinstance(command, click.Group) or word.startswith("-"):
            break
        sub = command.commands.get(word)
        if sub is None:
            return f"tracedq has no command {word!r}"
        command = sub
    return None


def _venv_problem(words: list[str]) -> str | None:
    name = words[0]
    if not (VENV_BIN / name).exists():
        return f"{name!r} is not a command of the project's environment ({VENV_BIN})"
    if name == "tracedq":
        return _tracedq_problem(words[1:])
    if name in ("python", "python3") and words[1:2] == ["-m"]:
        module = words[2]
        if importlib.util.find_spec(module) is None:
            return f"python -m {module}: no such module"
    return None


def problems(text: str) -> list[str]:
    """What is wrong with the README's commands, one line per command (empty when all is well)."""
    found = []
    activated = False
    targets = make_targets()
    for number, words in readme_commands(text):
        name, problem = words[0], None
        if name == "make":
            missing = [target for target in words[1:] if not target.startswith("-") and target not in targets]
            problem = f"no make target {missing}" if missing else None
        elif " ".join(words) == ACTIVATE:
            activated = (ROOT / ".venv" / "bin" / "activate").exists() or (VENV_BIN / "activate").exists()
            problem = None if activated else "there is no .venv/bin/activate after make install"
        elif name == "uv":
            if shutil.which("uv") is None:
                problem = "uv is not on PATH (make may install it with pip --user, into ~/.local/bin)"
            elif words[1:2] != ["run"] or len(words) < 3:
                problem = "only `uv run COMMAND` is expected"
            else:
                problem = _venv_problem(words[2:])
        elif name in SYSTEM_TOOLS:
            problem = None if shutil.which(name) else f"{name} is not on PATH"
        elif name in PREREQUISITES:
            problem = None
        elif (VENV_BIN / name).exists():
            problem = _venv_problem(words) if activated else f"{name!r} before the README says `{ACTIVATE}`"
        else:
            problem = f"{name!r} is neither a make target, a project command nor a known tool"
        if problem:
            found.append(f"README.md:{number}: {' '.join(words)}: {problem}")
    return found


def test_every_readme_command_names_something_that_exists() -> None:
    assert problems((ROOT / "README.md").read_text()) == []


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        ("tracedq trace list", "'tracedq' before the README says `source .venv/bin/activate`"),
        ("make demo-all", "no make target ['demo-all']"),
        (f"{ACTIVATE}\ntracedq dlq inspect orders", "tracedq has no command 'inspect'"),
        (f"{ACTIVATE}\npython -m actors.nothing check", "python -m actors.nothing: no such module"),
        ("rabbitmqadmin list queues", "'rabbitmqadmin' is neither a make target, a project command nor a known tool"),
    ],
)
def test_what_the_check_refuses(block: str, complaint: str) -> None:
    """The check itself: each kind of broken line is reported (README lines once failed exactly like these)."""
    found = problems(f"```sh\n{block}\n```\n")
    assert len(found) == 1 and found[0].endswith(complaint), found


def test_uv_run_is_refused_when_uv_is_not_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(ROOT / "no-such-dir"))
    assert problems("```sh\nuv run tracedq demo\n```\n") == [
        "README.md:2: uv run tracedq demo: uv is not on PATH (make may install it with pip --user, into ~/.local/bin)"
    ]
