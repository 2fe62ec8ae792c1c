"""What the training loop tells the outside, as a protocol: the CLI draws it (smarthdr_cli/progress.py,
with rich), tests and library callers pass nothing and get silence, and the library never imports a UI."""
from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Notes, and the start, steps and end of each epoch."""

    def note(self, text: str) -> None: ...

    def epoch_start(self, epoch: int, total: int, stage: str, steps: int) -> None: ...

    def step(self, step: int, losses: dict[str, float], samples_per_s: float) -> None: ...

    def epoch_end(self, record: dict[str, Any]) -> None: ...


class NullReporter:
    """The reporter of a caller that gave none, and of every rank but 0 (one voice per job)."""

    def note(self, text: str) -> None:
        pass

    def epoch_start(self, epoch: int, total: int, stage: str, steps: int) -> None:
        pass

    def step(self, step: int, losses: dict[str, float], samples_per_s: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass
