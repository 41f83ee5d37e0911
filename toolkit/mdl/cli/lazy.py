"""Command groups whose commands are imported only when used (or listed by `--help`), so that `mdl list`
loads neither the registry client, jsonschema nor numpy: every command module imports what it needs
at its top, and only the command that runs is imported."""

from __future__ import annotations

import gc
import importlib

import typer
import typer.main
from typer.core import TyperGroup

# name -> (module under mdl.cli, attribute: a command function or a Typer group, hidden)
CommandTable = dict[str, tuple[str, str, bool]]


def lazy_group(commands: CommandTable) -> type[TyperGroup]:
    """A Typer group class (`typer.Typer(cls=...)`) serving `commands`."""

    class LazyGroup(TyperGroup):
        def list_commands(self, ctx) -> list[str]:
            return list(commands)

        def get_command(self, ctx, name: str):
            if name not in commands:
                return super().get_command(ctx, name)
            module, attribute, hidden = commands[name]
            target = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            if isinstance(target, typer.Typer):  # a group of its own
                command = typer.main.get_command(target)
            else:
                single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
                single.command(name, hidden=hidden)(target)
                command = typer.main.get_command(single)
            command.name = name
            if not gc.isenabled():  # the CLI loaded with the collector paused (cli/launch.py): it is
                gc.freeze()  # loaded now; what loading made stays, so no collection walks it again
                gc.enable()  # and the command runs with the collector on
            return command

    return LazyGroup
