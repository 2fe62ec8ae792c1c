"""The man page (man/smarthdr.1) documents exactly the options the CLI has.

Each subcommand needs a `.SS` section naming it, and every option string of that subcommand must
appear in its section; the merge section must not mention options that no longer exist.

Recent typer releases vendor click (`typer._click`) and no longer install the `click` package,
so options and groups are recognised by duck typing (`param_type_name == "option"`, a
`.commands` mapping), never by importing click.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

import smarthdr_cli.app

MAN_PAGE = Path(__file__).resolve().parents[1] / "man" / "smarthdr.1"
HELP_OPTS = frozenset({"--help", "-h"})
# An option token: not glued to a word or another hyphen on either side (so "-o" does not match
# inside "--output" or "half-open", and "--ev" does not match inside "--every").
_TOKEN = r"(?<![\w-]){}(?![\w-])"
_LONG_OPTION = re.compile(r"(?<![\w-])--[A-Za-z0-9][A-Za-z0-9-]*")
_SHORT_OPTION = re.compile(r"(?<![\w-])-[A-Za-z](?![\w-])")


def normalise(roff: str) -> str:
    """roff source -> searchable text: `\\-` is a hyphen, font escapes and em dashes vanish."""
    text = roff.replace("\\-", "-")
    for escape in ("\\(em", "\\fB", "\\fR", "\\fI", "\\fP", "\\&"):
        text = text.replace(escape, "")
    return text


def section(text: str, macro: str, name: str) -> str | None:
    """The lines after the `macro` (".SS" or ".SH") heading whose title starts with `name`, up to
    the next .SS or .SH; None if there is no such heading. A leading "smarthdr" is allowed."""
    heading = re.compile(rf'^{re.escape(macro)}\s+"?(?:smarthdr\s+)?{re.escape(name)}(?![\w-])', re.IGNORECASE)
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if heading.match(line):
            end = start + 1
            while end < len(lines) and not re.match(r"^\.(SS|SH)\b", lines[end]):
                end += 1
            return "\n".join(lines[start + 1 : end])
    return None


def is_option(param: object) -> bool:
    """A click option, whichever click (installed or vendored by typer) built it."""
    return getattr(param, "param_type_name", None) == "option"


def option_strings(command: Any) -> list[str]:
    """Every option string of `command` (primary and secondary, e.g. --flag/--no-flag), minus help."""
    found = []
    for param in command.params:
        if is_option(param):
            found.extend(o for o in [*param.opts, *param.secondary_opts] if o not in HELP_OPTS)
    return found


def missing_options(command: Any, text: str) -> list[str]:
    """Option strings of `command` that `text` (already normalised) never mentions."""
    return [opt for opt in option_strings(command) if not re.search(_TOKEN.format(re.escape(opt)), text)]


def unknown_options(command: Any, text: str) -> list[str]:
    """Option-like tokens in `text` (already normalised) that `command` does not have."""
    known = set(option_strings(command)) | HELP_OPTS
    mentioned = set(_LONG_OPTION.findall(text)) | set(_SHORT_OPTION.findall(text))
    return sorted(mentioned - known)


@pytest.fixture(scope="module")
def cli() -> Any:
    group = typer.main.get_command(smarthdr_cli.app.app)
    assert isinstance(getattr(group, "commands", None), dict), f"{group!r} is not a command group"
    return group  # type: ignore[return-value]


@pytest.fixture(scope="module")
def man_text() -> str:
    assert MAN_PAGE.is_file(), f"man page missing: {MAN_PAGE}"
    return normalise(MAN_PAGE.read_text(encoding="utf-8"))


def _subcommands() -> list[str]:
    group = typer.main.get_command(smarthdr_cli.app.app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def test_cli_has_the_expected_subcommands(cli: Any) -> None:
    # Guards the parametrisation below against silently walking nothing.
    assert {"merge", "backends"} <= set(cli.commands)
    assert {"--output", "-o", "--quiet", "-q"} <= set(option_strings(cli.commands["merge"]))
    assert option_strings(cli.commands["backends"]) == ["--json"]


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_a_section(name: str, man_text: str) -> None:
    assert section(man_text, ".SS", name) is not None, f"no '.SS {name}' section in {MAN_PAGE.name}"


@pytest.mark.parametrize("name", _subcommands())
def test_every_option_is_documented_in_its_section(name: str, cli: Any, man_text: str) -> None:
    text = section(man_text, ".SS", name)
    assert text is not None, f"no '.SS {name}' section in {MAN_PAGE.name}"
    missing = missing_options(cli.commands[name], text)
    assert not missing, f"'.SS {name}' of {MAN_PAGE.name} does not document {', '.join(missing)}"


@pytest.mark.parametrize("name", _subcommands())
def test_documented_defaults_match(name: str, cli: Any, man_text: str) -> None:
    """Each option's paragraph states its default where the CLI has a real one, and 'required'."""
    text = section(man_text, ".SS", name)
    assert text is not None
    items = re.split(r"^\.TP\b.*$", text, flags=re.MULTILINE)[1:]
    for param in cli.commands[name].params:
        if not is_option(param):
            continue
        primary = param.opts[0]
        pattern = _TOKEN.format(re.escape(primary))
        # The item's tag is its first line after .TP.
        item = next((i for i in items if re.search(pattern, i.strip().splitlines()[0] if i.strip() else "")), None)
        assert item is not None, f"no .TP item for {primary} in '.SS {name}'"
        if param.required:
            assert "required" in item.lower(), f"{primary} is required but its man entry does not say so"
        if param.default is not None and param.default is not False:
            flat = re.sub(r"\s+", " ", re.sub(r"^\.\w+\s*", "", item, flags=re.MULTILINE))
            assert re.search(rf"Default: {re.escape(str(param.default))}\b", flat), (
                f"{primary}: man page should say 'Default: {param.default}'"
            )


def test_merge_section_mentions_no_unknown_options(cli: Any, man_text: str) -> None:
    text = section(man_text, ".SS", "merge")
    assert text is not None
    unknown = unknown_options(cli.commands["merge"], text)
    assert not unknown, f"'.SS merge' of {MAN_PAGE.name} mentions options merge does not have: {', '.join(unknown)}"


def test_global_options_are_documented(cli: Any, man_text: str) -> None:
    assert re.search(_TOKEN.format("--version"), man_text), "--version is not in the man page"
    options = section(man_text, ".SH", "OPTIONS")
    assert options is not None, "no .SH OPTIONS section for the global options"
    missing = missing_options(cli, options)
    assert not missing, f".SH OPTIONS does not document {', '.join(missing)}"
    assert "--version" in option_strings(cli)


def test_page_has_the_standard_sections(man_text: str) -> None:
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert section(man_text, ".SH", name) is not None, f"no .SH {name}"


def test_exr_attributes_written_by_merge_are_documented(man_text: str) -> None:
    source = (Path(smarthdr_cli.app.__file__).resolve().parent / "merge.py").read_text(encoding="utf-8")
    attributes = set(re.findall(r'"(smarthdr:\w+)"', source))
    assert attributes, "no smarthdr:* EXR attributes found in merge.py"
    missing = sorted(a for a in attributes if a not in man_text)
    assert not missing, f"EXR attributes not in the man page: {', '.join(missing)}"


# -- the checks themselves must catch drift: run them on deliberately broken copies ----------------


def test_checker_catches_an_option_removed_from_the_page(cli: Any, man_text: str) -> None:
    merge = cli.commands["merge"]
    text = section(man_text, ".SS", "merge")
    assert text is not None and not missing_options(merge, text)
    for victim in ("--tonemap", "-q"):
        broken = re.sub(_TOKEN.format(re.escape(victim)), "", text)
        assert missing_options(merge, broken) == [victim]
    # "--ev" must not count as documented because "--every" or "--ev-bias" is.
    without_ev = re.sub(_TOKEN.format("--ev"), "--every", text)
    assert missing_options(merge, without_ev) == ["--ev"]


def test_checker_catches_an_option_missing_from_its_own_section(cli: Any) -> None:
    page = normalise(
        '.SH COMMANDS\n.SS merge\n.TP\n\\fB\\-\\-output\\fR\n.SS "backends"\n.TP\n.B \\-\\-json\n.SH EXIT STATUS\n'
    )
    assert section(page, ".SS", "backends") == ".TP\n.B --json"
    # merge's --json appears only in the backends section: it still counts as missing for merge.
    assert "--json" in missing_options(cli.commands["merge"], section(page, ".SS", "merge") or "")
    assert missing_options(cli.commands["backends"], section(page, ".SS", "backends") or "") == []
    assert section(page, ".SS", "nosuchcommand") is None


def test_checker_catches_a_stale_option_in_the_merge_section(cli: Any, man_text: str) -> None:
    merge = cli.commands["merge"]
    text = section(man_text, ".SS", "merge")
    assert text is not None
    stale = text + "\n.TP\n.B --gamma\nRemoved long ago.\n.TP\n.B -x\n"
    assert unknown_options(merge, stale) == ["--gamma", "-x"]


def test_normalise_handles_roff_escapes() -> None:
    assert normalise(r"\fB\-\-float32\fR and \fI\-q\fP\(emquiet") == "--float32 and -qquiet"
