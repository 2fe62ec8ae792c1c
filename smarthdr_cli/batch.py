"""`smarthdr batch`: merge every bracket found in photo folders, surviving whatever goes wrong.

Each bracket becomes `OUT_DIR/<subfolder>/<reference stem>.exr`, mirroring the input folders,
so names are deterministic: a rerun with `--skip-existing` after a crash does only what is
missing (outputs are written atomically, so an existing file is complete), and `--shard K/N`
splits a library between cluster jobs by a stable hash of that name. A failed bracket is
reported (JSON lines) and the run goes on.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from smarthdr_cli.bracket import choose_three
from smarthdr_cli.discover import Discovery, Shot, discover
from smarthdr_cli.errors import InputError, OutputError, SmartHDRError
from smarthdr_cli.merge import MergeSettings, check_settings, create_backend, run_merge

REPORT_NAME = "smarthdr-batch-report.jsonl"


@dataclass
class Job:
    """One bracket to merge and where its outputs go."""

    shots: list[Shot]
    output: Path
    preview: Path | None = None
    uncertainty: Path | None = None

    @property
    def files(self) -> list[str]:
        return [str(s.path) for s in self.shots]

    def describe(self) -> dict[str, Any]:
        ordered = sorted(self.shots, key=lambda s: s.exposure or 0.0)
        return {
            "bracket": self.files,
            "exposures": [s.exposure for s in ordered],
            "reference": str(reference_shot(self.shots).path),
            "output": str(self.output),
        }


@dataclass
class BatchSettings:
    """`smarthdr batch` options beyond those it shares with `merge` (kept in `merge`)."""

    roots: list[Path]
    out_dir: Path
    merge: MergeSettings
    gap: float = 2.0
    bracket_size: int | None = None
    suffix: str = ".exr"
    preview: str | None = None  # "jpg" or "png"
    skip_existing: bool = False
    jobs: int = 1
    shard: tuple[int, int] = (1, 1)
    report: Path | None = None


@dataclass
class BatchSummary:
    merged: int = 0
    failed: int = 0
    skipped: int = 0
    singles: int = 0
    unreadable: int = 0
    report: Path | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)


def reference_shot(shots: list[Shot]) -> Shot:
    """The frame `merge` will take as reference: the middle one in exposure order."""
    ordered = sorted(shots, key=lambda s: (s.exposure or 0.0, s.path.name))
    chosen, position = choose_three(len(ordered), None)
    return ordered[chosen[position]]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: use K/N, e.g. 2/8 for the second of eight jobs") from None
    if not 1 <= index <= count:
        raise InputError(f"--shard {text!r}: K must lie within 1..N")
    return index, count


def shard_of(output: Path, out_dir: Path, count: int) -> int:
    """1-based shard of an output: a stable hash of its name, so every job agrees without talking."""
    return zlib.crc32(output.relative_to(out_dir).as_posix().encode()) % count + 1


def plan(found: Discovery, settings: BatchSettings) -> tuple[list[Job], list[dict[str, Any]]]:
    """Jobs for the brackets of this shard, and report lines for what is not merged."""
    jobs: dict[Path, Job] = {}
    notes: list[dict[str, Any]] = []
    for shots in found.brackets:
        ref = reference_shot(shots)
        folder = settings.out_dir / ref.path.parent.relative_to(ref.root)
        job = Job(shots, folder / f"{ref.path.stem}{settings.suffix}")
        if settings.preview:
            job.preview = folder / f"{ref.path.stem}.{settings.preview}"
        if settings.merge.uncertainty is not None:
            job.uncertainty = folder / f"{ref.path.stem}.uncertainty.exr"
        twin = jobs.get(job.output)
        if twin is None:
            jobs[job.output] = job
            continue
        keep, drop = (job, twin) if ref.raw and not twin.shots[0].raw else (twin, job)
        jobs[job.output] = keep
        same_kind = keep.shots[0].raw == drop.shots[0].raw
        notes.append({
            "status": "failed" if same_kind else "skipped",
            "bracket": drop.files,
            "reason": f"output name {keep.output.name} taken by bracket {keep.files[0]}"
            + ("" if same_kind else " (the RAW twin of these shots is merged instead)"),
        })
    for shot, reason in found.singles:
        notes.append({"status": "single", "file": str(shot.path), "reason": reason})
    for path, reason in found.unreadable:
        notes.append({"status": "unreadable", "file": str(path), "reason": reason})
    index, count = settings.shard
    mine = [job for output, job in sorted(jobs.items()) if shard_of(output, settings.out_dir, count) == index]
    return mine, notes


def _settings_for(job: Job, base: MergeSettings) -> MergeSettings:
    return replace(base, output=job.output, preview=job.preview, uncertainty=job.uncertainty)


# Worker processes for --jobs N keep one backend each for all their brackets.
_WORKER_BACKEND: Any = None


def _start_worker(settings: MergeSettings, threads: int) -> None:
    global _WORKER_BACKEND
    import cv2

    cv2.setNumThreads(threads)
    _WORKER_BACKEND = create_backend(replace(settings, threads=threads))


def _merge_job(job: Job, settings: MergeSettings, backend: Any = None) -> dict[str, Any]:
    """Merge one bracket; every failure becomes a report line, never an exception."""
    started = time.perf_counter()
    line: dict[str, Any] = {"bracket": job.files, "output": str(job.output)}
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        report = run_merge([s.path for s in job.shots], _settings_for(job, settings), backend=backend or _WORKER_BACKEND)
        line.update(status="ok", reference=report.reference, backend=report.backend, seconds=round(report.seconds, 3))
    except SmartHDRError as exc:
        line.update(status="failed", reason=str(exc))
    except MemoryError:
        line.update(status="failed", reason="out of memory")
    except OSError as exc:
        line.update(status="failed", reason=f"{exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - one broken bracket must not stop a library
        line.update(status="failed", reason=f"internal error ({type(exc).__name__}: {exc})")
    line.setdefault("seconds", round(time.perf_counter() - started, 3))
    return line


def _run_jobs(jobs: list[Job], settings: BatchSettings, backend: Any) -> Iterator[dict[str, Any]]:
    workers = max(1, min(settings.jobs, len(jobs)))
    if workers == 1:
        for job in jobs:
            yield _merge_job(job, settings.merge, backend)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(settings.merge, threads)) as pool:
        futures = [pool.submit(_merge_job, job, settings.merge) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def check_batch(settings: BatchSettings) -> None:
    for root in settings.roots:
        if not root.exists():
            raise InputError(f"{root}: no such folder")
    out = settings.out_dir
    if not out.is_dir():
        raise OutputError(f"{out}: output folder does not exist (create it first)")
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: output folder is not writable")
    if settings.suffix not in (".exr", ".hdr"):
        raise OutputError(f"--format {settings.suffix.lstrip('.')}: choose exr or hdr")
    if settings.preview not in (None, "jpg", "png"):
        raise OutputError(f"--preview {settings.preview}: choose jpg or png")
    if settings.bracket_size is not None and settings.bracket_size < 2:
        raise InputError("--bracket-size must be at least 2")
    check_settings(settings.merge)


def run_batch(
    settings: BatchSettings,
    note: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int, int], None] = lambda done, failed, total: None,
) -> BatchSummary:
    """Discover, plan and merge; the report is written line by line as brackets finish."""
    check_batch(settings)
    found = discover(settings.roots, settings.gap, settings.bracket_size)
    jobs, notes = plan(found, settings)
    summary = BatchSummary()
    index, count = settings.shard
    report_path = settings.report or settings.out_dir / (
        REPORT_NAME if count == 1 else REPORT_NAME.replace(".jsonl", f".shard-{index}-of-{count}.jsonl")
    )
    summary.report = report_path
    todo = []
    for job in jobs:
        if settings.skip_existing and job.output.exists():
            notes.append({"status": "skipped", "bracket": job.files, "output": str(job.output), "reason": "output exists"})
        else:
            todo.append(job)
    backend = None
    if todo:
        # Started here even when workers start their own: a backend that cannot start (no
        # weights, no GPU) is one clean error before any work, not a broken process pool.
        backend = create_backend(settings.merge, note)
        if settings.jobs > 1 and backend.name == "cuda":
            note("--jobs ignored: the GPU backend merges one bracket at a time with one model")
    parallel = settings.jobs > 1 and backend is not None and backend.name != "cuda"
    effective = settings if parallel else replace(settings, jobs=1)
    try:
        handle = open(report_path, "w", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{report_path}: cannot write the report ({exc.strerror})") from None
    with handle:
        def record(line: dict[str, Any]) -> None:
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            summary.lines.append(line)
            status = line["status"]
            if status == "ok":
                summary.merged += 1
            elif status == "failed":
                summary.failed += 1
            elif status == "skipped":
                summary.skipped += 1
            elif status == "single":
                summary.singles += 1
            else:
                summary.unreadable += 1

        for line in notes:
            record(line)
        note(f"{len(found.brackets)} brackets found, {len(jobs)} in this shard, {len(todo)} to merge; "
             f"{len(found.singles)} single shots, {len(found.unreadable)} unreadable files")
        progress(0, 0, len(todo))
        done = 0
        for line in _run_jobs(todo, effective, None if parallel else backend):
            record(line)
            done += 1
            if line["status"] == "failed":
                note(f"failed: {line['bracket'][0]}: {line['reason']}")
            progress(done, summary.failed, len(todo))
    return summary
