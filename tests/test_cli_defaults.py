"""The CLI states its defaults in Typer signatures (the library's settings dataclasses live in
modules every `smarthdr` call would otherwise have to import); they must be the library's.

A default changed in one place only would make `smarthdr merge` and a script calling
`run_merge` behave differently with the same (absent) options.
"""
from __future__ import annotations

import dataclasses

import pytest
import typer

from smarthdr_cli.app import app
from smarthdr_cli.batch import BatchSettings
from smarthdr_cli.data.layouts import ReadSettings
from smarthdr_cli.evaluate import EvaluateSettings
from smarthdr_cli.merge import MergeSettings


def _cli_defaults(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    return {param.name: param.default for param in group.commands[command].params}  # type: ignore[attr-defined]


def _field_defaults(settings: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(settings) if f.default is not dataclasses.MISSING}


# CLI parameter -> (settings class, field, how the CLI's text becomes the field's value)
CASES = [
    ("merge", "align_mode", MergeSettings, "align", str),
    ("merge", "backend", MergeSettings, "backend", str),
    ("merge", "precision", MergeSettings, "precision", str),
    ("merge", "tonemap", MergeSettings, "tonemap", str),
    ("merge", "response", MergeSettings, "response", lambda text: text),
    ("batch", "gap", BatchSettings, "gap", float),
    ("evaluate", "backend", EvaluateSettings, "backend", str),
    ("evaluate", "precision", EvaluateSettings, "precision", str),
    ("evaluate", "response", ReadSettings, "response", str),
]


@pytest.mark.parametrize("command, param, settings, name, convert", CASES)
def test_cli_defaults_are_the_library_defaults(command, param, settings, name, convert):
    cli = _cli_defaults(command)
    assert param in cli, f"{command} has no parameter {param}: {sorted(cli)}"
    library = _field_defaults(settings)[name]
    if name == "response" and settings is MergeSettings:
        library = library.text  # a ResponseChoice: the text as given
    assert convert(cli[param]) == library, f"{command} {param}: CLI {cli[param]!r}, {settings.__name__}.{name} {library!r}"
