"""How a command's help reads: arguments and values named in words (`ID...`, `TAG`, `N`,
`SECONDS`), never a type (`<list[int]>`, `<int range>`) or typer's `{ID}` braces."""

from __future__ import annotations

import re

import typer
from typer.core import TyperCommand

HelpFormatter = typer._click.HelpFormatter  # typer vendors click; no public alias
Context = typer.Context


_RANGE = re.compile(r"(-?[\d.]+)<=x<=(-?[\d.]+)")
_AT_LEAST = re.compile(r"x>=(-?[\d.]+)")


def _ranges_in_words(text: str) -> str:
    """typer's `1<=x<=1000` and `x>=1` as `1 to 1000` and `at least 1`."""
    return _AT_LEAST.sub(r"at least \1", _RANGE.sub(r"\1 to \2", text))


def _argument_name(param: typer.core.TyperArgument) -> str:
    name = param.metavar or (param.name or "").upper()
    return name if param.nargs == 1 or name.endswith("...") else f"{name}..."


class Command(TyperCommand):
    """A typer command whose usage line and argument list speak in words."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:  # type: ignore[override]
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument) and not param.hidden:
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:  # type: ignore[override]
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                if not param.hidden:
                    arguments.append((_argument_name(param), param.help or ""))
            elif (record := param.get_help_record(ctx)) is not None:
                options.append((record[0], _ranges_in_words(record[1])))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def use_words(app: typer.Typer) -> None:
    """Every command of `app` (and of its sub-apps) gets `Command`'s help."""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = Command
    for group in app.registered_groups:
        if group.typer_instance is not None:
            use_words(group.typer_instance)
