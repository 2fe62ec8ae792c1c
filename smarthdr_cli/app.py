"""The `smarthdr` command line: one thin function per subcommand; the work lives in library modules."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from smarthdr_cli import __version__
from smarthdr_cli.errors import SmartHDRError

app = typer.Typer(
    name="smarthdr",
    help="Merge exposure brackets (RAW, JPEG, PNG, TIFF) into ghost-free HDR images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
F = TypeVar("F", bound=Callable[..., Any])


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def cli_errors(command: F) -> F:
    """Turn every failure into one line on stderr: exit 2 for the user's input, 1 for our bugs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except SmartHDRError as exc:
            _stderr().print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _stderr().print("interrupted; no output was left half-written", markup=False)
            raise typer.Exit(130) from None
        except MemoryError:
            _stderr().print("error: out of memory", markup=False)
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: never show a traceback
            text = str(exc).splitlines()[0] if str(exc) else ""
            _stderr().print(f"error: internal error ({type(exc).__name__}: {text}); please report it", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"smarthdr {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Merge exposure brackets (RAW, JPEG, PNG, TIFF) into ghost-free HDR images."""


@app.command()
@cli_errors
def merge(
    inputs: Annotated[
        List[Path],
        typer.Argument(
            help="Frame files of one bracket (any order), or one folder in Kalantari layout.",
            show_default=False,
            metavar="FRAMES...",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="HDR output: .exr (OpenEXR) or .hdr (Radiance).")],
    reference: Annotated[
        Optional[str],
        typer.Option(
            help="Reference frame: a position in exposure order (1 = shortest) or one of the files. "
            "Default: the middle frame (the lower middle for an even count, so the shorter of two)."
        ),
    ] = None,
    exposures: Annotated[
        Optional[str], typer.Option(help="Exposure times in seconds, in the order the files are given, e.g. 1/100,1/25,1/6.")
    ] = None,
    ev: Annotated[Optional[str], typer.Option(help="Exposure values in stops, in the order the files are given, e.g. -2,0,2.")] = None,
    response: Annotated[
        str,
        typer.Option(
            help="Camera response of JPEG/PNG/TIFF frames: auto (calibrate, but gamma for a folder with "
            "exposure.txt; RAW needs none), gamma, calibrate, or a curve FILE (256 lines). "
            "RAW frames accept only auto or gamma."
        ),
    ] = "auto",
    align_mode: Annotated[
        str, typer.Option("--align", help="Pre-align hand-held frames to the reference: none, translation or homography.")
    ] = "homography",
    backend: Annotated[str, typer.Option(help="Backend: auto (cuda, then cpu, then classic) or a name from `smarthdr backends`.")] = "auto",
    weights: Annotated[Optional[Path], typer.Option(help="Weights (.safetensors) for a learned backend.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for backends that use them.")] = None,
    max_memory: Annotated[
        Optional[str],
        typer.Option(help="Memory one learned inference may use, e.g. 2G or 512M; sets the tile size. Default: 2G on CPU, 70% of free GPU memory."),
    ] = None,
    precision: Annotated[
        str, typer.Option(help="Learned backends' arithmetic: auto (fp32 on CPU, bf16 or fp16 on GPU), fp32, bf16 or fp16.")
    ] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the network (learned backends; slow first run).")] = False,
    float32: Annotated[bool, typer.Option("--float32", help="Write 32-bit float EXR instead of half.")] = False,
    preview: Annotated[Optional[Path], typer.Option(help="Also write a tone-mapped preview (.jpg or .png).")] = None,
    tonemap: Annotated[str, typer.Option(help="Preview operator: reinhard (global, with white point) or mu (the log-like mu-law, mu=5000, used by the metrics).")] = "reinhard",
    uncertainty: Annotated[Optional[Path], typer.Option(help="Also write the backend's per-pixel uncertainty map (.exr); refused by backends without one (classic).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object describing the merge on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No status lines on stderr (errors still shown).")] = False,
) -> None:
    """Merge one bracket into an HDR image."""
    from smarthdr_cli.merge import MergeSettings, run_merge
    from smarthdr_cli.model.tiling import parse_memory

    console = _stderr()
    note = (lambda _msg: None) if quiet else (lambda msg: console.print(msg, markup=False, soft_wrap=True))
    settings = MergeSettings(
        output=output, reference=reference, exposures=exposures, ev=ev, response=response,
        align=align_mode, backend=backend, weights=weights, threads=threads,  # type: ignore[arg-type]
        max_memory=parse_memory(max_memory) if max_memory else None, precision=precision, compile=compile_model,
        float32=float32, preview=preview, tonemap=tonemap, uncertainty=uncertainty, overwrite=overwrite,
    )
    report = run_merge(inputs, settings, note)
    if as_json:
        print(json.dumps(report.as_dict()))
    elif not quiet:
        for line in report.notes:
            note(line)
        note(f"wrote {', '.join(report.outputs.values())} in {report.seconds:.1f} s")


@app.command()
@cli_errors
def batch(
    folders: Annotated[
        List[Path], typer.Argument(help="Folders (searched recursively) or files holding brackets.", show_default=False, metavar="DIRS...")
    ],
    out_dir: Annotated[Path, typer.Option("--output", "-o", help="Existing folder for the results; input subfolders are mirrored.")],
    gap: Annotated[float, typer.Option(min=0.0, help="Seconds from the end of one exposure to the start of the next within a bracket.")] = 2.0,
    bracket_size: Annotated[
        Optional[int], typer.Option(min=2, help="Group every N consecutive shots instead of by capture time (files without EXIF times).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the grouping (and outputs) without merging.")] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave brackets whose output exists alone (rerun after a crash).")] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Brackets merged in parallel by CPU backends (the GPU backend uses one).")] = 1,
    shard: Annotated[str, typer.Option(help="Take part K of N of the library (a stable hash of output names), e.g. 3/8 for job arrays.")] = "1/1",
    report: Annotated[
        Optional[Path], typer.Option(help="JSON-lines report. Default: smarthdr-batch-report.jsonl in the output folder (per shard).")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="HDR output type: exr or hdr.")] = "exr",
    preview: Annotated[Optional[str], typer.Option(help="Also write a tone-mapped preview per bracket: jpg or png.")] = None,
    tonemap: Annotated[str, typer.Option(help="Preview operator: reinhard or mu.")] = "reinhard",
    uncertainty: Annotated[bool, typer.Option("--uncertainty", help="Also write <name>.uncertainty.exr (learned backends).")] = False,
    response: Annotated[str, typer.Option(help="Camera response, as for merge: auto, gamma, calibrate or a curve FILE.")] = "auto",
    align_mode: Annotated[str, typer.Option("--align", help="Pre-alignment, as for merge: none, translation or homography.")] = "homography",
    backend: Annotated[str, typer.Option(help="Backend, as for merge: auto or a name from `smarthdr backends`.")] = "auto",
    weights: Annotated[Optional[Path], typer.Option(help="Weights (.safetensors) for a learned backend.")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads per merge for backends that use them.")] = None,
    max_memory: Annotated[Optional[str], typer.Option(help="Memory one learned inference may use, e.g. 2G.")] = None,
    precision: Annotated[str, typer.Option(help="Learned backends' arithmetic: auto, fp32, bf16 or fp16.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the network (learned backends).")] = False,
    float32: Annotated[bool, typer.Option("--float32", help="Write 32-bit float EXR instead of half.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (without it, an existing output fails its bracket).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: JSON lines instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or status on stderr (errors still shown).")] = False,
) -> None:
    """Find every bracket in photo folders and merge each one; failures are reported, not fatal."""
    from smarthdr_cli.batch import BatchSettings, check_batch, parse_shard
    from smarthdr_cli.merge import MergeSettings
    from smarthdr_cli.model.tiling import parse_memory

    merge_settings = MergeSettings(
        output=out_dir, response=response, align=align_mode, backend=backend, weights=weights,  # type: ignore[arg-type]
        threads=threads, max_memory=parse_memory(max_memory) if max_memory else None, precision=precision,
        compile=compile_model, float32=float32, tonemap=tonemap, overwrite=overwrite,
        uncertainty=Path("uncertainty.exr") if uncertainty else None,
    )
    settings = BatchSettings(
        roots=folders, out_dir=out_dir, merge=merge_settings, gap=gap, bracket_size=bracket_size,
        suffix="." + output_format.lower().lstrip("."), preview=preview.lower().lstrip(".") if preview else None,
        skip_existing=skip_existing, jobs=jobs, shard=parse_shard(shard), report=report,
    )
    check_batch(settings)  # usage errors before any progress display
    if dry_run:
        _print_plan(settings, as_json)
        return
    console = _stderr()
    note = (lambda _msg: None) if quiet else (lambda msg: console.print(msg, markup=False, soft_wrap=True))
    summary = _run_with_progress(settings, note, quiet, console)
    note(
        f"merged {summary.merged}, failed {summary.failed}, skipped {summary.skipped}, single shots {summary.singles}, "
        f"unreadable {summary.unreadable}; report: {summary.report}"
    )
    if summary.failed:
        raise typer.Exit(3)


def _print_plan(settings: Any, as_json: bool) -> None:
    from smarthdr_cli.batch import plan
    from smarthdr_cli.discover import discover

    jobs, notes = plan(discover(settings.roots, settings.gap, settings.bracket_size), settings)
    if as_json:
        for job in jobs:
            print(json.dumps({"status": "planned", **job.describe(), "exists": job.output.exists()}))
        for line in notes:
            print(json.dumps(line))
        return
    table = Table("reference", "frames", "exposures (s)", "output")
    for job in jobs:
        described = job.describe()
        exposures = ", ".join(f"{t:.4g}" if t else "?" for t in described["exposures"])
        table.add_row(Path(described["reference"]).name, str(len(job.shots)), exposures, described["output"])
    Console(highlight=False).print(table)
    for line in notes:
        print(f"{line['status']}: {line.get('file') or line.get('bracket', [''])[0]}: {line['reason']}")


def _run_with_progress(settings: Any, note: Callable[[str], None], quiet: bool, console: Console) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from smarthdr_cli.batch import run_batch

    if quiet:
        return run_batch(settings, note)
    columns = (TextColumn("brackets"), BarColumn(), MofNCompleteColumn(), TextColumn("failed {task.fields[failed]}"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("merge", total=None, failed=0)

        def progress(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done, total=total, failed=failed)

        return run_batch(settings, note, progress)


@app.command()
@cli_errors
def backends(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per backend, one per line.")] = False,
) -> None:
    """List every backend, whether it can run here, and why not."""
    from smarthdr_backends.base import registry

    rows = []
    for name, entry in sorted(registry().items()):
        state = entry.availability()
        rows.append({"name": name, "available": state.available, "reason": state.reason, "origin": entry.origin, "summary": entry.summary()})
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("backend", "available", "why", "from")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else "no", row["reason"], row["origin"])
    Console(highlight=False).print(table)


def main() -> None:
    """Console-script entry point: usage errors, too, become one line and exit code 2."""
    try:
        code = app(prog_name="smarthdr", standalone_mode=False)
    except Exception as exc:  # click's exceptions; duck-typed, as typer may bundle its own click
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message()
            if message:  # empty after `smarthdr` alone, whose help was already shown
                _stderr().print(f"error: {message} (see 'smarthdr --help')", markup=False, soft_wrap=True)
            sys.exit(int(exc.exit_code))
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
