from importlib import metadata

import numpy as np
import pytest

import smarthdr_backends.base as base
from smarthdr_cli.bracket import Bracket
from smarthdr_cli.errors import BackendError


class HappyBackend:
    name = "happy"
    summary = "test plugin"
    learned = False
    gives_uncertainty = True

    @classmethod
    def availability(cls, options=None):
        return base.Availability(True, "always")

    def __init__(self, options):
        self.options = options

    def merge(self, bracket):
        hdr = bracket.images[bracket.reference] ** 2.2
        return base.MergeResult(hdr=hdr, uncertainty=np.zeros_like(hdr), weights_id="test")


class SadBackend(HappyBackend):
    name = "sad"

    @classmethod
    def availability(cls, options=None):
        return base.Availability(False, "torch sees no GPU")


def _entry_points(monkeypatch, points):
    real = metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == base.ENTRY_POINT_GROUP:
            return metadata.EntryPoints(points)
        return real(**kwargs)

    monkeypatch.setattr(base.metadata, "entry_points", fake)


def test_installed_entry_point_registers_classic():
    names = {p.name for p in metadata.entry_points(group=base.ENTRY_POINT_GROUP)}
    assert "classic" in names
    assert "classic" in base.registry()
    assert isinstance(base.registry()["classic"].load()(base.BackendOptions()), base.Backend)


def test_third_party_plugins_are_discovered(monkeypatch):
    import smarthdr_cli.model.weights as weights_module

    monkeypatch.setattr(weights_module, "default_weights", lambda: None)
    _entry_points(monkeypatch, [
        metadata.EntryPoint("happy", f"{__name__}:HappyBackend", base.ENTRY_POINT_GROUP),
        metadata.EntryPoint("sad", f"{__name__}:SadBackend", base.ENTRY_POINT_GROUP),
        metadata.EntryPoint("broken", "no_such_module_xyz:Backend", base.ENTRY_POINT_GROUP),
    ])
    entries = base.registry()
    assert {"classic", "cpu", "cuda", "happy", "sad", "broken"} <= set(entries)
    assert entries["happy"].availability().available
    assert entries["sad"].availability() == base.Availability(False, "torch sees no GPU")
    broken = entries["broken"].availability()
    assert not broken.available and "failed to load" in broken.reason
    backend, passed = base.create("auto", base.BackendOptions())  # no weights: no learned backend
    assert backend.name == "classic"
    assert [reason.split(":")[0] for reason in passed] == ["cuda", "cpu"]
    backend, _ = base.create("happy", base.BackendOptions())
    bracket = Bracket([np.full((2, 2, 3), v, np.float32) for v in (0.2, 0.5)], np.array([1.0, 4.0]), 1)
    assert backend.merge(bracket).weights_id == "test"


def test_unknown_and_unavailable_backends(monkeypatch):
    _entry_points(monkeypatch, [metadata.EntryPoint("sad", f"{__name__}:SadBackend", base.ENTRY_POINT_GROUP)])
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        base.create("nope", base.BackendOptions())
    with pytest.raises(BackendError, match="not available: torch sees no GPU"):
        base.create("sad", base.BackendOptions())
