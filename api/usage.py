"""docs/usage.md's option reference, generated from the commands' own parsers, so it lists every option of
every command (pyproject.toml [project.scripts], ferstream.commands.COMMANDS) as `--help` describes it.

    python -m ferstream.usage            # rewrite the reference in docs/usage.md
    python -m ferstream.usage --check    # exit 1 when docs/usage.md is not what the parsers give

The reference is the part of the page between BEGIN and END; the hand-written text around it is kept. The
defaults shown are those of a machine without FER_* variables (the command's --help shows the local ones).
Exit codes: 0 written or current, 1 out of date (--check), 2 bad usage or a page without the markers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ferstream.commandline import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandParser, add_version_argument,
                                   print_error)

PROG = "python -m ferstream.usage"
BEGIN = ("<!-- BEGIN options: generated from the commands' parsers by `python -m ferstream.usage` "
         "(make docs); edit their help texts, not this part -->")
END = "<!-- END options -->"
# Every command answers these two; the page says so once instead of in every table.
LEFT_OUT = {"help", "version"}
# The repository's page, when this module runs from a checkout (the default PAGE).
DEFAULT_PAGE = Path(__file__).resolve().parents[1] / "docs" / "usage.md"


def command_parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every installed command's name and its parser (each command module's build_parser()), in
    ferstream.commands.COMMANDS order. Imports every command's module (torch with the training ones)."""
    from ferstream.commands import COMMANDS

    for prog, module in COMMANDS.items():
        yield prog, importlib.import_module(module).build_parser()


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each of parser's subcommands, in the order they were added."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def cell(text: str) -> str:
    """text as one Markdown table cell: one line, pipes escaped, < and * not read as HTML or emphasis."""
    text = " ".join(text.split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")


def argument_row(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    """One table row: the argument's usage form and its help with %(default)s and the like filled in, as
    --help prints them."""
    if action.option_strings:
        usage = formatter._format_action_invocation(action)
    else:
        usage = formatter._metavar_formatter(action, action.dest)(1)[0]
    usage = usage.replace("|", "\\|")  # a table cell ends at any unescaped pipe, code spans included
    return f"| `{usage}` | {cell(formatter._expand_help(action))} |"


def argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    """One row per argument of parser, help and version left out."""
    formatter = parser._get_formatter()
    return [argument_row(formatter, action) for action in parser._actions
            if action.dest not in LEFT_OUT and not isinstance(action, argparse._SubParsersAction)]


def first_paragraph(text: str | None) -> str:
    """The first paragraph of a parser's description, on one line."""
    return " ".join((text or "").strip().split("\n\n")[0].split())


def table(rows: list[str]) -> list[str]:
    """rows under the reference's table header, and a blank line; nothing when there are no rows."""
    return ["| argument | what it does |", "|---|---|", *rows, ""] if rows else []


def section(title: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    """One command's heading, summary and table of arguments, then its subcommands'. Arguments every
    subcommand takes alike (the same row) are listed once, under the command."""
    lines = [f"### {title}", ""] + ([summary, ""] if summary else [])
    subs = [(name, help_text, argument_rows(sub)) for name, help_text, sub in subcommands(parser)]
    shared = [row for row in subs[0][2] if all(row in rows for _, _, rows in subs)] if len(subs) > 1 else []
    lines += table(argument_rows(parser))
    if shared:
        lines += ["Every subcommand takes:", ""] + table(shared)
    for name, help_text, rows in subs:
        lines += [f"#### {title} {name}", ""]
        if help_text:
            lines += [cell(help_text[:1].upper() + help_text[1:]) + ".", ""]
        lines += table([row for row in rows if row not in shared])
    return lines


def option_reference(parsers: Sequence[tuple[str, argparse.ArgumentParser]]) -> str:
    """The generated part of docs/usage.md, BEGIN and END included: a section per command and subcommand."""
    lines = [BEGIN, ""]
    for prog, parser in parsers:
        lines += section(prog, cell(first_paragraph(parser.description)), parser)
    return "\n".join([*lines, END])


def updated_page(page: str, reference: str) -> str:
    """page with the text from BEGIN to END replaced by reference; ValueError when a marker is missing."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no generated part: it needs the lines {BEGIN!r} and {END!r}")
    return page[:start] + reference + page[end + len(END):]


def neutral_environment() -> None:
    """Drops the FER_* variables from this process's environment, so that the defaults the page shows are a
    fresh machine's, not this one's ($FER_SERVER, $FER_DATA_DIR...)."""
    for name in [name for name in os.environ if name.startswith("FER_")]:
        del os.environ[name]


def build_parser() -> argparse.ArgumentParser:
    """This generator's own options."""
    parser = CommandParser(prog=PROG, description="Write the option reference of every fer-* command into "
                                                  "docs/usage.md, from the commands' parsers.")
    parser.add_argument("page", nargs="?", type=Path, default=DEFAULT_PAGE,
                        help="the page to update (default: the checkout's docs/usage.md)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page's reference is not what the parsers give")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Rewrites (or with --check compares) the page's reference; returns the exit code."""
    args = build_parser().parse_args(argv)
    neutral_environment()
    try:
        page = args.page.read_text(encoding="utf-8")
        updated = updated_page(page, option_reference(list(command_parsers())))
    except OSError as error:
        print_error(PROG, f"{args.page}: {error.strerror}")
        return EXIT_USAGE
    except ValueError as error:
        print_error(PROG, f"{args.page}: {error}")
        return EXIT_USAGE
    if args.check:
        if updated != page:
            print_error(PROG, f"{args.page} is out of date: run `{PROG}` (make docs)")
            return EXIT_FAILED
        return EXIT_OK
    if updated != page:
        args.page.write_text(updated, encoding="utf-8")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
