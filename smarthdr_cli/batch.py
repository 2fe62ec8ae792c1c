"""`smarthdr batch`: merge every bracket found in photo folders, surviving whatever goes wrong.

Each bracket becomes `OUT_DIR/<subfolder>/<reference stem>.exr`, mirroring the input folders,
so names are deterministic: a rerun with `--skip-existing` after a crash does only what is
missing (outputs are written atomically, so an existing file is complete), and `--shard K/N`
splits a library between cluster jobs by a stable hash of that name. A failed bracket is
reported (JSON lines) and the run goes on.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import zlib
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from smarthdr_cli.discover import Discovery, Shot, discover, reference_shot
from smarthdr_cli.errors import InputError, OutputError, SmartHDRError
from smarthdr_cli.io.output import check_output_path, remove_stale_temporaries
from smarthdr_cli.machine import usable_cores
from smarthdr_cli.merge import MergeSettings, create_backend, run_merge
from smarthdr_cli.reading import check_options

REPORT_NAME = "smarthdr-batch-report.jsonl"
STOP_SECONDS = 2.0  # how long workers get to unwind their bracket after Ctrl-C/SIGTERM before SIGKILL


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

    @property
    def outputs(self) -> list[Path]:
        """The set one merge writes (all appear together, see io.output.atomic_outputs)."""
        return [p for p in (self.output, self.preview, self.uncertainty) if p is not None]

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
    inputs = found_files(found)
    for output, job in list(jobs.items()):
        taken = next((p for p in job.outputs if p.resolve() in inputs), None)
        if taken is not None:
            del jobs[output]
            notes.append({
                "status": "failed",
                "bracket": job.files,
                "reason": f"{taken} is one of the photos in the library; choose another --output folder",
            })
    for shot, reason in found.singles:
        notes.append({"status": "single", "file": str(shot.path), "reason": reason})
    for path, reason in found.unreadable:
        notes.append({"status": "unreadable", "file": str(path), "reason": reason})
    index, count = settings.shard
    mine = [job for output, job in sorted(jobs.items()) if shard_of(output, settings.out_dir, count) == index]
    return mine, notes


def found_files(found: Discovery) -> set[Path]:
    """Every file discovery saw (bracket frames, single shots, unreadable files), resolved:
    none of them may be written, whatever the flags."""
    paths = [s.path for shots in found.brackets for s in shots]
    paths += [shot.path for shot, _ in found.singles] + [path for path, _ in found.unreadable]
    return {p.resolve() for p in paths}


def _settings_for(job: Job, base: MergeSettings) -> MergeSettings:
    return replace(base, output=job.output, preview=job.preview, uncertainty=job.uncertainty)


# Worker processes for --jobs N keep one backend each for all their brackets.
_WORKER_BACKEND: Any = None
_BUSY = False  # a bracket is being merged: a signal must unwind it (temporaries are removed)
_STOPPING = False
_IDLE = threading.Event()


def _start_worker(settings: MergeSettings, threads: int, parent: int) -> None:
    global _WORKER_BACKEND
    import cv2

    signal.signal(signal.SIGINT, _worker_signal)
    signal.signal(signal.SIGTERM, _worker_signal)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    cv2.setNumThreads(threads)
    _WORKER_BACKEND = create_backend(replace(settings, threads=threads))


def _worker_signal(signum: int, _frame: Any) -> None:
    """Stop at once: unwind the bracket in progress (once), or leave quietly when idle."""
    global _STOPPING
    if not _BUSY:
        os._exit(128 + signum)
    if not _STOPPING:
        _STOPPING = True
        raise KeyboardInterrupt


def _watch_parent(parent: int) -> None:
    """Workers die with the batch: when the parent is gone (killed, even with SIGKILL), the
    bracket in progress is unwound and the worker exits instead of merging on unreported."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    _IDLE.wait(30)
    os._exit(1)


def _worker_job(job: Job, settings: MergeSettings) -> dict[str, Any]:
    global _BUSY
    if _STOPPING:
        os._exit(128 + signal.SIGTERM)
    _IDLE.clear()
    _BUSY = True
    try:
        return _merge_job(job, settings, _WORKER_BACKEND)
    except KeyboardInterrupt:  # unwound, temporaries removed: a batch that stops needs no more of us
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False
        _IDLE.set()


def _merge_job(job: Job, settings: MergeSettings, backend: Any) -> dict[str, Any]:
    """Merge one bracket; every failure becomes a report line, never an exception."""
    started = time.perf_counter()
    line: dict[str, Any] = {"bracket": job.files, "output": str(job.output)}
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        report = run_merge([s.path for s in job.shots], _settings_for(job, settings), backend=backend)
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


class _Runner:
    """The brackets to merge, serially or in worker processes, with a way to stop at once."""

    def __init__(self, jobs: list[Job], settings: BatchSettings, backend: Any) -> None:
        self.jobs, self.settings, self.backend = jobs, settings, backend
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[Future[dict[str, Any]], Job] = {}
        self.reported: set[Future[dict[str, Any]]] = set()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        workers = max(1, min(self.settings.jobs, len(self.jobs)))
        if workers == 1:
            for job in self.jobs:
                yield _merge_job(job, self.settings.merge, self.backend)
            return
        import multiprocessing

        threads = max(1, usable_cores() // workers)
        self.pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(self.settings.merge, threads, os.getpid()),
        )
        self.futures = {self.pool.submit(_worker_job, job, self.settings.merge): job for job in self.jobs}
        for future in as_completed(self.futures):
            self.reported.add(future)
            yield self._line(future)
        self.pool.shutdown(wait=True)

    def _line(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        error = future.exception()
        if error is None:
            return future.result()
        job = self.futures[future]
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"worker process died ({type(error).__name__})"
        return {"bracket": job.files, "output": str(job.output), "status": "failed", "reason": reason}

    def stop(self) -> list[dict[str, Any]]:
        """Stop the workers (unwinding what runs, SIGKILL after STOP_SECONDS) and return the
        lines of brackets that finished meanwhile, so that every output on disk is reported."""
        if self.pool is None:
            return []
        # No future.cancel(): Python 3.11's pool then fails on the cancelled ones when it sees its
        # workers die (InvalidStateError in its thread). Dead workers start nothing new anyway.
        processes = list(getattr(self.pool, "_processes", {}).values())
        for process in processes:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
        # A worker inside one long C call (OpenCV's ECC fit) sees the signal only when it returns.
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        self.pool.shutdown(wait=True)
        for future, job in self.futures.items():
            if not future.done() or future.cancelled() or future.exception() is not None:
                for output in job.outputs:  # what a killed worker left; its pid is gone now
                    remove_stale_temporaries(output)
        finished = [f for f in self.futures if f.done() and not f.cancelled() and f not in self.reported]
        return [f.result() for f in finished if f.exception() is None]


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
    check_options(settings.merge.read)


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
    report_path = report_path_of(settings)
    summary.report = report_path
    mode = report_mode(report_path, settings, found_files(found))
    todo = []
    for job in jobs:
        present = [p for p in job.outputs if p.exists()]
        if not settings.skip_existing or not present:
            todo.append(job)
        elif len(present) == len(job.outputs):
            notes.append({"status": "skipped", "bracket": job.files, "output": str(job.output), "reason": "output exists"})
        elif settings.merge.overwrite:
            todo.append(job)
        else:
            missing = [p.name for p in job.outputs if p not in present]
            notes.append({
                "status": "failed", "bracket": job.files, "output": str(job.output),
                "reason": f"incomplete outputs: {', '.join(p.name for p in present)} exist(s) without "
                f"{', '.join(missing)}; pass --overwrite to merge this bracket again",
            })
    backend = None
    if todo:
        # Started here even when workers start their own: a backend that cannot start (no
        # weights, no GPU) is one clean error before any work, not a broken process pool.
        backend = create_backend(settings.merge, note)
    parallel = settings.jobs > 1 and backend is not None and getattr(backend, "parallel_safe", True)
    if settings.jobs > 1 and backend is not None and not parallel:
        note(f"--jobs ignored: the {backend.name} backend merges one bracket at a time with one model")
    effective = settings if parallel else replace(settings, jobs=1)
    try:
        handle = open(report_path, mode, encoding="utf-8")
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
        runner = _Runner(todo, effective, None if parallel else backend)
        try:
            for line in runner:
                record(line)
                done += 1
                if line["status"] == "failed":
                    note(f"failed: {line['bracket'][0]}: {line['reason']}")
                progress(done, summary.failed, len(todo))
        except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, and report what they finished
            for line in runner.stop():
                record(line)
            raise
    return summary


def report_path_of(settings: BatchSettings) -> Path:
    index, count = settings.shard
    return settings.report or settings.out_dir / (
        REPORT_NAME if count == 1 else REPORT_NAME.replace(".jsonl", f".shard-{index}-of-{count}.jsonl")
    )


def _is_report(path: Path) -> bool:
    """Whether `path` is a batch report (empty, or JSON lines with a status), which a rerun may continue."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if not first.strip():
        return path.stat().st_size == 0
    try:
        return isinstance(json.loads(first), dict) and "status" in json.loads(first)
    except json.JSONDecodeError:
        return False


def report_mode(path: Path, settings: BatchSettings, inputs: set[Path]) -> str:
    """How the report is opened ("w" new or replaced, "a" continued), under the rules of every
    output: never one of the photos, never a file replaced without --overwrite."""
    if path.resolve() in inputs:
        raise OutputError(f"{path}: is one of the photos in the library; choose another --report")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a report file name")
    if not path.exists():
        check_output_path(path, overwrite=False)
        return "w"
    if settings.skip_existing and _is_report(path):
        return "a"  # a rerun after a crash continues the run's report
    if not settings.merge.overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it, or --skip-existing to continue that run)")
    if not _is_report(path):
        raise OutputError(f"{path}: exists and is not a batch report; choose another --report")
    return "w"
