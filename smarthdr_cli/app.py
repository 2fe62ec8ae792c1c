"""The `smarthdr` command line: one thin function per subcommand; the work lives in library modules."""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from smarthdr_cli import __version__, signals
from smarthdr_cli import options as opts
from smarthdr_cli.errors import SmartHDRError
from smarthdr_cli.train.config import TrainConfig

app = typer.Typer(
    cls=opts.Group,
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
            _say(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None
        except BrokenPipeError:  # the reader of our stdout went away (`| head`): end quietly, as SIGPIPE would
            signals.silence_stdout()
            raise typer.Exit(128 + 13) from None
        except MemoryError:
            _say("error: out of memory")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - the CLI boundary: never show a traceback
            if signals.interrupted_by(exc):  # e.g. Ctrl-C during a lazy import: ImportError
                raise _interrupted(exc) from None
            text = str(exc).splitlines()[0] if str(exc) else ""
            _say(f"error: internal error ({type(exc).__name__}: {text}); please report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _interrupted(exc: BaseException) -> typer.Exit:
    status = signals.exit_status(exc)
    what = "terminated (SIGTERM)" if status == 128 + 15 else "interrupted"
    _say(f"{what}; no output was left half-written")
    return typer.Exit(status)


def _say(line: str) -> None:
    """One line on stderr; with stderr closed (`2>&-`) the exit code alone must still be right."""
    with contextlib.suppress(OSError, ValueError):
        _stderr().print(line, markup=False, soft_wrap=True)


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


@app.command(cls=opts.Command)
@cli_errors
def merge(
    inputs: Annotated[
        List[Path],
        typer.Argument(help="Frame files of one bracket (any order), or one folder in Kalantari layout.", show_default=False, metavar="FRAMES..."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="HDR output: .exr (OpenEXR) or .hdr (Radiance).")],
    reference: Annotated[
        Optional[str],
        typer.Option(
            help="Reference frame: a position in exposure order (1 = shortest) or one of the files. "
            "Default: the middle frame (the lower middle for an even count, so the shorter of two)."
        ),
    ] = None,
    exposures: Annotated[Optional[str], typer.Option(help="Exposure times in seconds, in the order the files are given, e.g. 1/100,1/25,1/6.")] = None,
    ev: Annotated[Optional[str], typer.Option(help="Exposure values in stops, in the order the files are given, e.g. -2,0,2.")] = None,
    response: opts.Response = "auto",
    align_mode: opts.Align = "homography",
    backend: opts.Backend = "auto",
    weights: opts.Weights = None,
    threads: opts.Threads = None,
    max_memory: opts.MaxMemory = None,
    precision: opts.Precision = "auto",
    compile_model: opts.Compile = False,
    float32: opts.Float32 = False,
    preview: Annotated[Optional[Path], typer.Option(help="Also write a tone-mapped preview (.jpg or .png).")] = None,
    tonemap: opts.Tonemap = "fusion",
    uncertainty: Annotated[Optional[Path], typer.Option(help="Also write the backend's per-pixel uncertainty map (.exr); refused by backends without one (classic).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object describing the merge on stdout.")] = False,
    quiet: opts.Quiet = False,
) -> None:
    """Merge one bracket into an HDR image."""
    from smarthdr_cli.errors import ExposureError
    from smarthdr_cli.exposure import given_ev, given_seconds
    from smarthdr_cli.merge import MergeSettings, run_merge
    from smarthdr_cli.reading import parse_align, parse_reference
    from smarthdr_cli.response import parse_response
    from smarthdr_cli.sizes import parse_memory

    console = _stderr()
    note = (lambda _msg: None) if quiet else (lambda msg: console.print(msg, markup=False, soft_wrap=True))
    # Option values parsed here, named by their flags; the reader checks them against the frames.
    response_choice, align_choice = parse_response(response, "--response"), parse_align(align_mode, "--align")
    if exposures is not None and ev is not None:
        raise ExposureError("pass either --exposures or --ev, not both")
    given = given_seconds(exposures, "--exposures") if exposures is not None else given_ev(ev, "--ev") if ev is not None else None
    settings = MergeSettings(
        output=output, reference=parse_reference(reference, "--reference") if reference is not None else None,
        exposures=given, response=response_choice, align=align_choice, backend=backend, weights=weights, threads=threads,
        max_memory=parse_memory(max_memory) if max_memory else None, precision=precision, compile=compile_model,
        float32=float32, preview=preview, tonemap=tonemap, uncertainty=uncertainty, overwrite=overwrite,
    )
    with contextlib.ExitStack() as stack:
        progress: Optional[Callable[[int, int], None]] = None
        if not quiet and console.is_terminal:  # a bar for people; logs and pipes get the status lines only
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            bar: list[Any] = []  # (Progress, task), made at the first tile: backends without tiles show none

            def show_tiles(done: int, total: int) -> None:
                if not bar:
                    columns = (TextColumn("tiles"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
                    display = stack.enter_context(Progress(*columns, console=console, transient=True))
                    bar.extend([display, display.add_task("tiles", total=total)])
                bar[0].update(bar[1], completed=done, total=total)

            progress = show_tiles
        report = run_merge(inputs, settings, note, progress=progress)
    if as_json:
        print(json.dumps(report.as_dict()))
    elif not quiet:
        for line in report.notes:
            note(line)
        note(f"wrote {', '.join(report.outputs.values())} in {report.seconds:.1f} s")


@app.command(cls=opts.Command)
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
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Leave brackets whose outputs (HDR, preview, uncertainty) all exist alone, and continue the report (rerun after a crash)."
    )] = False,
    jobs: Annotated[int, typer.Option(min=1, help="Brackets merged in parallel by CPU backends (the GPU backend uses one).")] = 1,
    shard: Annotated[str, typer.Option(help="Take part K of N of the library (a stable hash of output names), e.g. 3/8 for job arrays.")] = "1/1",
    report: Annotated[
        Optional[Path], typer.Option(help="JSON-lines report; never a photo, replaced only with --overwrite. Default: smarthdr-batch-report.jsonl in the output folder (per shard).")
    ] = None,
    output_format: Annotated[str, typer.Option("--format", help="HDR output type: exr or hdr.")] = "exr",
    preview: Annotated[Optional[str], typer.Option(help="Also write a tone-mapped preview per bracket: jpg or png.")] = None,
    tonemap: opts.Tonemap = "fusion",
    uncertainty: Annotated[bool, typer.Option("--uncertainty", help="Also write <name>.uncertainty.exr (learned backends).")] = False,
    response: opts.Response = "auto",
    align_mode: opts.Align = "homography",
    backend: opts.Backend = "auto",
    weights: opts.Weights = None,
    threads: opts.Threads = None,
    max_memory: opts.MaxMemory = None,
    precision: opts.Precision = "auto",
    compile_model: opts.Compile = False,
    float32: opts.Float32 = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (without it, an existing output fails its bracket).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --dry-run: JSON lines instead of a table.")] = False,
    quiet: opts.Quiet = False,
) -> None:
    """Find every bracket in photo folders and merge each one; failures are reported, not fatal."""
    from smarthdr_cli.batch import BatchSettings, check_batch, parse_shard
    from smarthdr_cli.merge import MergeSettings
    from smarthdr_cli.reading import parse_align
    from smarthdr_cli.response import parse_response
    from smarthdr_cli.sizes import parse_memory

    merge_settings = MergeSettings(
        output=out_dir, response=parse_response(response, "--response"), align=parse_align(align_mode, "--align"),
        backend=backend, weights=weights,
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


@app.command(cls=opts.Command)
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


@app.command(cls=opts.Command)
@cli_errors
def evaluate(
    test_dir: Annotated[Path, typer.Argument(help="Labeled scenes (e.g. Kalantari's Test folder or a synth test split).", show_default=False, metavar="TEST_DIR")],
    backend: opts.Backend = "auto",
    weights: opts.Weights = None,
    save_dir: Annotated[Optional[Path], typer.Option(help="Existing folder for each prediction (<scene>.exr) and its mu-law preview (<scene>.jpg).")] = None,
    response: opts.Response = "auto",
    align_mode: opts.Align = "none",
    threads: opts.Threads = None,
    precision: opts.Precision = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files in --save-dir.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object: scenes, mean, reference (the reference frame alone, linearised: the floor), backend, weights.")] = False,
    quiet: opts.Quiet = False,
) -> None:
    """Score a backend on labeled test scenes: PSNR-mu, PSNR-l, SSIM-mu, SSIM-l and runtime per scene."""
    from smarthdr_cli.data.layouts import ReadSettings
    from smarthdr_cli.evaluate import EvaluateSettings
    from smarthdr_cli.evaluate import evaluate as run_evaluation

    settings = EvaluateSettings(
        test_dir=test_dir, backend=backend, weights=weights, save_dir=save_dir, read=ReadSettings(response=response, align=align_mode),
        threads=threads, precision=precision, overwrite=overwrite,
    )
    console = _stderr()
    note = None if quiet else (lambda text: console.print(text, markup=False, soft_wrap=True))
    progress = None if quiet else (lambda done, total, name: console.print(f"evaluated {done}/{total}: {name}", markup=False))
    result = run_evaluation(settings, progress, note)
    if as_json:
        print(json.dumps(result))
        return
    table = Table("scene", "PSNR-mu", "PSNR-l", "SSIM-mu", "SSIM-l", "seconds", title=f"{result['backend']} {result['weights'] or ''}".strip())
    for row in result["scenes"]:
        table.add_row(row["name"], f"{row['psnr_mu']:.2f}", f"{row['psnr_l']:.2f}", f"{row['ssim_mu']:.4f}", f"{row['ssim_l']:.4f}", f"{row['seconds']:.2f}")
    mean = result["mean"]
    table.add_row("mean", f"{mean['psnr_mu']:.2f}", f"{mean['psnr_l']:.2f}", f"{mean['ssim_mu']:.4f}", f"{mean['ssim_l']:.4f}", "")
    floor = result["reference"]
    table.add_row("reference frame alone", f"{floor['psnr_mu']:.2f}", f"{floor['psnr_l']:.2f}", f"{floor['ssim_mu']:.4f}", f"{floor['ssim_l']:.4f}", "")
    Console(highlight=False).print(table)


@app.command(cls=opts.Command)
@cli_errors
def synth(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder for the dataset.", show_default=False, metavar="OUT")],
    scenes: Annotated[Optional[int], typer.Option(help="Number of scenes. Default: the split's total, else 20.")] = None,
    seed: Annotated[int, typer.Option(help="Seed: scene i depends only on (seed, i).")] = 0,
    split: Annotated[Optional[str], typer.Option(help="Write labeled/unlabeled/test folders, e.g. labeled=5,unlabeled=69,test=15.")] = None,
    height: Annotated[int, typer.Option(help="Image height in pixels.")] = 1000,
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 1500,
    profile: Annotated[str, typer.Option(
        help="How scenes are shot: custom (the capture flags below), mixed (the training mix: every factor drawn per scene), "
        "a test class: dim, bright, clipped, camera-motion, moving, tone-jpeg; or film-jpeg, a second camera "
        "(film curve, lifted blacks, 8-bit JPEG, 2-8x the noise, hand-held)."
    )] = "custom",
    ev_sets: Annotated[Optional[str], typer.Option(help="EV sets (short,reference,long) separated by ';'; each scene draws one. Default: -2,0,2;-3,0,3. Profile custom only.")] = None,
    bits: Annotated[Optional[int], typer.Option(help="Bits per sample of the TIFF frames: 8 or 16. Default: 16. Profile custom only.")] = None,
    response: Annotated[Optional[str], typer.Option(help="Camera response: gamma (2.2), s-curve (sRGB with a contrast S-curve) or film. Default: gamma. Profile custom only.")] = None,
    noise: Annotated[float, typer.Option(help="Read-noise standard deviation relative to full scale (0 = none), before the per-scene ISO factor.")] = 0.0005,
    shot_gain: Annotated[float, typer.Option(help="Shot-noise variance per unit of signal (0 = none), before the per-scene ISO factor.")] = 0.0001,
    objects: Annotated[Optional[str], typer.Option(help="Moving objects per scene: N or FEWEST-MOST; 0 for static scenes. Default: 1-4. Profile custom only.")] = None,
    camera_shift: Annotated[Optional[float], typer.Option(help="Largest camera shift of a non-reference frame, pixels. Default: 4. Profile custom only.")] = None,
    camera_rotation: Annotated[Optional[float], typer.Option(help="Largest camera rotation of a non-reference frame, degrees. Default: 0.5. Profile custom only.")] = None,
    hdr_source: Annotated[Optional[Path], typer.Option(help="Folder of real HDR photographs (.exr/.hdr) to use instead of procedural scenes.")] = None,
    procedural_share: Annotated[float, typer.Option(help="With --hdr-source: this fraction of the scenes is procedural instead.")] = 0.0,
    jobs: Annotated[int, typer.Option(help="Worker processes (output is identical for any number).")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the scenes of an earlier run in OUT.")] = False,
    quiet: opts.Quiet = False,
) -> None:
    """Generate labeled dynamic brackets with HDR ground truth (Kalantari layout) for training and tests."""
    from smarthdr_cli.data.synth import SynthSettings, generate, parse_ev_sets, parse_objects, parse_split
    from smarthdr_cli.errors import InputError

    # The capture flags of profile custom: given ones override SynthSettings' defaults.
    capture = {"ev_sets": ev_sets, "bits": bits, "response": response, "objects": objects, "camera_shift": camera_shift, "camera_rotation": camera_rotation}
    given = {name: value for name, value in capture.items() if value is not None}
    if profile != "custom" and given:
        raise InputError(f"--{next(iter(given)).replace('_', '-')}: --profile {profile} draws it per scene; drop it or use --profile custom")
    parsers = {"ev_sets": parse_ev_sets, "objects": parse_objects}
    given = {name: parsers[name](value) if name in parsers else value for name, value in given.items()}
    settings = SynthSettings(
        scenes=scenes, seed=seed, height=height, width=width, noise=noise, shot_gain=shot_gain, hdr_source=hdr_source,
        split=parse_split(split) if split else None, profile=profile, procedural_share=procedural_share, overwrite=overwrite,
        jobs=jobs, **given,
    )
    console = _stderr()
    progress = None if quiet else (lambda done, total: console.print(f"scene {done}/{total}", markup=False) if done == total or done % 10 == 0 else None)
    summary = generate(out, settings, progress)
    if not quiet:
        console.print(f"{len(summary['scenes'])} scenes in {out} (settings in {out / 'synth.json'})", markup=False)


@app.command(cls=opts.Command)
@cli_errors
def train(
    # the run (the default panel): every other flag is the TrainConfig field of its name
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="New run folder: config, checkpoint, metrics.jsonl, exported students.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder from its last checkpoint, with its saved config.")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="TOML or JSON file of settings (flags given here override it).")] = None,
    ablation: Annotated[Optional[str], typer.Option(help="Switches of a row of the seed's Table 3: i, ii, iii, iv, v, vi or vii.")] = None,
    seed: Annotated[Optional[int], opts.setting("seed", "Seed of initialisation, sampling and augmentation.", None)] = None,
    validate_every: Annotated[Optional[int], opts.setting("validate_every", "Validate on --test every N epochs.", None, min=1)] = None,
    quiet: opts.Quiet = False,
    # data
    labeled: Annotated[Optional[Path], opts.setting("labeled", "Folder of labeled scenes (bracket + ground-truth .hdr/.exr each).", opts.DATA)] = None,
    unlabeled: Annotated[
        Optional[Path],
        opts.setting(
            "unlabeled", "Unlabeled brackets for the semi-supervised stage: a folder of scene folders, or a photo library (e.g. ~/Photos) "
            "whose brackets of 3+ frames are found as `smarthdr batch` finds them (EXIF time and exposure).", opts.DATA,
        ),
    ] = None,
    unlabeled_limit: Annotated[
        Optional[int],
        opts.setting("unlabeled_limit", "Use at most N unlabeled scenes or brackets, evenly spread over the sorted list.", opts.DATA, unset="all", min=1),
    ] = None,
    gap: Annotated[
        Optional[float],
        opts.setting("gap", "Photo-library --unlabeled: the most seconds between two frames of one bracket (as `batch --gap`).", opts.DATA, min=0.0),
    ] = None,
    pseudo: Annotated[Optional[Path], opts.setting("pseudo", "Train on fixed pseudo labels from `smarthdr pseudo-label` instead of a live teacher.", opts.DATA)] = None,
    test: Annotated[Optional[Path], opts.setting("test", "Labeled test scenes: PSNR-mu/PSNR-l after every --validate-every epochs; picks the best student.", opts.DATA)] = None,
    response: Annotated[Optional[str], opts.setting("response", opts.RESPONSE, opts.DATA)] = None,
    align: Annotated[Optional[str], opts.setting("align", opts.ALIGN, opts.DATA)] = None,
    patch: Annotated[Optional[int], opts.setting("patch", "Training patch size in pixels.", opts.DATA)] = None,
    stride: Annotated[Optional[int], opts.setting("stride", "Stride of the patch grid.", opts.DATA)] = None,
    cache_dir: Annotated[Optional[Path], opts.setting("cache_dir", opts.CACHE_DIR, opts.DATA)] = None,
    # model
    model: Annotated[Optional[str], opts.setting("model", "Network size: full (published GFHDR), small or tiny.", opts.MODEL)] = None,
    init_weights: Annotated[Optional[Path], opts.setting("init_weights", "Start the student from these weights (.safetensors) instead of random.", opts.MODEL)] = None,
    detach_judge: Annotated[
        Optional[bool],
        opts.setting(
            "detach_judge", "The judge reads F_att without sending L^k's gradient into the trunk. --no-detach-judge: the gradient flows "
            "through (the first version's behaviour).", opts.MODEL, "--detach-judge/--no-detach-judge",
        ),
    ] = None,
    # schedule
    warmup_epochs: Annotated[Optional[int], opts.setting("warmup_epochs", "Epochs on labeled data only.", opts.SCHEDULE, min=0)] = None,
    semi_epochs: Annotated[Optional[int], opts.setting("semi_epochs", "Epochs of the semi-supervised stage (supervised with --no-teacher).", opts.SCHEDULE, min=0)] = None,
    steps_per_epoch: Annotated[
        Optional[int], opts.setting("steps_per_epoch", "Fix the steps of an epoch.", opts.SCHEDULE, unset="one pass over the (kept) patches", min=1)
    ] = None,
    batch: Annotated[Optional[int], opts.setting("batch", "Patches per step and branch (global across processes).", opts.SCHEDULE, min=1)] = None,
    lr: Annotated[Optional[float], opts.setting("lr", "Adam learning rate.", opts.SCHEDULE)] = None,
    lr_schedule: Annotated[
        Optional[str],
        opts.setting("lr_schedule", "Learning rate over the run: constant (the seed) or cosine (decays to --lr-min-ratio x --lr at the end).", opts.SCHEDULE),
    ] = None,
    lr_min_ratio: Annotated[Optional[float], opts.setting("lr_min_ratio", "Final rate of the cosine schedule, as a fraction of --lr.", opts.SCHEDULE)] = None,
    clip_grad: Annotated[Optional[float], opts.setting("clip_grad", "Clip the gradient norm of each step to this value.", opts.SCHEDULE, unset="no clipping")] = None,
    # losses
    lambda_u: Annotated[Optional[float], opts.setting("lambda_u", "Weight of the unsupervised losses (eq. 9).", opts.LOSSES)] = None,
    lambda_v: Annotated[Optional[float], opts.setting("lambda_v", "Weight of the VGG-16 perceptual losses (eq. 9).", opts.LOSSES)] = None,
    perceptual: Annotated[Optional[bool], opts.setting("perceptual", "Use the VGG-16 perceptual loss.", opts.LOSSES, "--perceptual/--no-perceptual")] = None,
    vgg_weights: Annotated[
        Optional[Path],
        opts.setting("vgg_weights", "Local VGG-16 weights (torchvision's vgg16-397923af.pth or .safetensors) instead of downloading.", opts.LOSSES),
    ] = None,
    uncertainty_loss: Annotated[
        Optional[bool], opts.setting("uncertainty_loss", "Train the judge with L^k (eq. 10).", opts.LOSSES, "--uncertainty-loss/--no-uncertainty-loss")
    ] = None,
    k_eps: Annotated[Optional[float], opts.setting("k_eps", "Added to sigma^2 in L^k.", opts.LOSSES)] = None,
    k_domain: Annotated[Optional[str], opts.setting("k_domain", "Values compared by L^k: mu (tone-mapped) or linear.", opts.LOSSES)] = None,
    k_weight: Annotated[
        Optional[float], opts.setting("k_weight", "Weight of L^k in eq. 9, 0 or more (0: L^k is logged but not trained on; the judge then learns nothing).", opts.LOSSES)
    ] = None,
    # the teacher, pseudo labels and masking
    teacher: Annotated[Optional[str], opts.setting("teacher", "Teacher: ema (mean teacher) or none (supervised baseline).", opts.SEMI)] = None,
    no_teacher: Annotated[bool, typer.Option("--no-teacher", help="Same as --teacher none: the supervised baseline.", rich_help_panel=opts.SEMI)] = False,
    ema_alpha: Annotated[Optional[float], opts.setting("ema_alpha", "EMA rate of the teacher (eq. 3).", opts.SEMI)] = None,
    scorer: Annotated[Optional[str], opts.setting("scorer", opts.SCORER, opts.SEMI)] = None,
    patch_mask: Annotated[Optional[bool], opts.setting("patch_mask", opts.PATCH_MASK, opts.SEMI, "--patch-mask/--no-patch-mask")] = None,
    pixel_mask: Annotated[Optional[bool], opts.setting("pixel_mask", opts.PIXEL_MASK, opts.SEMI, "--pixel-mask/--no-pixel-mask")] = None,
    tau_patch: Annotated[Optional[float], opts.setting("tau_patch", opts.TAU_PATCH, opts.SEMI)] = None,
    tau_pixel: Annotated[Optional[float], opts.setting("tau_pixel", opts.TAU_PIXEL, opts.SEMI)] = None,
    normalisation: Annotated[Optional[str], opts.setting("normalisation", opts.NORMALISATION, opts.SEMI)] = None,
    strong_aug: Annotated[Optional[bool], opts.setting("strong_aug", "Strong augmentation of the unlabeled branch.", opts.SEMI, "--strong-aug/--no-strong-aug")] = None,
    # performance: --resume accepts these
    device: Annotated[Optional[str], opts.setting("device", opts.DEVICE, opts.PERFORMANCE)] = None,
    threads: Annotated[Optional[int], opts.setting("threads", "CPU threads.", opts.PERFORMANCE, unset="all cores", min=1)] = None,
    checkpoint_activations: Annotated[
        Optional[bool],
        opts.setting(
            "checkpoint_activations", "Recompute the transformer layers' activations in the backward pass: far less memory per patch, "
            "about a third more compute.", opts.PERFORMANCE, "--checkpoint-activations/--no-checkpoint-activations",
        ),
    ] = None,
) -> None:
    """Train GFHDR with the seed's semi-supervised recipe on your own folders (few ground truths)."""
    flags = opts.config_flags(locals())  # first: the parameters named like TrainConfig fields (None: not given)
    if no_teacher:
        flags["teacher"] = "none"

    from smarthdr_cli.errors import InputError
    from smarthdr_cli.progress import RichReporter
    from smarthdr_cli.train.checkpoint import resumed_config
    from smarthdr_cli.train.config import resolve
    from smarthdr_cli.train.loop import train as run_training

    if resume is not None:
        runtime = ("device", "threads", "checkpoint_activations")  # where and how, not what is computed
        given = sorted(k for k, v in flags.items() if v is not None and k not in runtime)
        if output is not None or config_file is not None or ablation is not None or given:
            raise InputError("--resume continues with the run's saved config; pass only --device, --threads or --checkpoint-activations with it")
        config = resumed_config(resume)
        overrides = {k: flags[k] for k in runtime if flags[k] is not None}
        config = config.updated(**overrides) if overrides else config
        run_dir = resume
    else:
        if output is None:
            raise InputError("pass --output RUN_DIR for a new run (or --resume RUN_DIR to continue one)")
        config = resolve(config_file, flags, ablation)
        run_dir = output
    reporter = RichReporter(_stderr(), quiet)
    result = run_training(config, run_dir, resume=resume is not None, reporter=reporter)
    if result.final is not None:
        reporter.note(f"final student: {result.final}" + (f"; best: {result.best}" if result.best else ""))


@app.command("pseudo-label", cls=opts.Command)
@cli_errors
def pseudo_label(
    unlabeled: Annotated[
        Path, typer.Option(help="Unlabeled brackets: a folder of scene folders, or a photo library whose brackets of 3+ frames are found as `smarthdr batch` finds them (as train --unlabeled).")
    ],
    weights: Annotated[Path, typer.Option(help="The teacher: trained weights (.safetensors), e.g. a run's student-final.safetensors.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for pseudo.exr, uncertainty.exr, masks and preview per scene, and summary.json.")],
    patch: Annotated[int, typer.Option(min=1, help="Patch size of the patch-level mask (use the training --patch).")] = TrainConfig.patch,
    stride: Annotated[int, typer.Option(min=1, help="Stride of the patch grid (use the training --stride).")] = TrainConfig.stride,
    unlabeled_limit: Annotated[Optional[int], typer.Option(min=1, help="Label at most N scenes or brackets, evenly spread over the sorted list (as train). Default: all.")] = None,
    gap: Annotated[float, typer.Option(min=0.0, help="Photo library: the most seconds between two frames of one bracket (as batch).")] = TrainConfig.gap,
    tau_patch: opts.TauPatch = TrainConfig.tau_patch,
    tau_pixel: opts.TauPixel = TrainConfig.tau_pixel,
    patch_mask: opts.PatchMask = TrainConfig.patch_mask,
    pixel_mask: opts.PixelMask = TrainConfig.pixel_mask,
    normalisation: opts.Normalisation = TrainConfig.normalisation,
    scorer: opts.Scorer = TrainConfig.scorer,
    device: opts.Device = TrainConfig.device,
    cache_dir: opts.CacheDir = None,
    response: opts.Response = TrainConfig.response,
    align_mode: opts.Align = TrainConfig.align,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a folder that already holds files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    quiet: opts.Quiet = False,
) -> None:
    """The teacher's step on its own: pseudo GTs, uncertainty maps and bi-level masks to inspect or train from."""
    from smarthdr_cli.data.layouts import ReadSettings
    from smarthdr_cli.errors import InputError
    from smarthdr_cli.train.masking import MaskSettings
    from smarthdr_cli.train.pseudo_folder import run_pseudo_label
    from smarthdr_cli.train.pseudo_label import describe_levels

    if scorer not in ("judge", "reference"):
        raise InputError(f"--scorer {scorer}: choose judge or reference")
    settings = MaskSettings(patch=patch_mask, pixel=pixel_mask, tau_patch=tau_patch, tau_pixel=tau_pixel, size=patch, stride=stride, normalisation=normalisation)
    console = _stderr()
    progress = None if quiet else (lambda done, total, name: console.print(f"pseudo-labeled {done}/{total}: {name}", markup=False))
    data = run_pseudo_label(
        unlabeled, weights, output, settings, scorer=scorer, read=ReadSettings(response=response, align=align_mode),
        cache_dir=cache_dir, device=device, overwrite=overwrite, progress=progress, limit=unlabeled_limit, gap=gap,
        note=None if quiet or as_json else (lambda line: console.print(line, markup=False, soft_wrap=True)),
    )
    if as_json:
        print(json.dumps(data))
    elif not quiet:
        console.print(f"kept {100 * float(data['kept_fraction']):.1f}% of pixels over {len(data['scenes'])} scenes; {output / 'summary.json'}", markup=False)
        console.print(describe_levels(data), markup=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: usage errors, too, become one line and exit code 2."""
    signals.install()
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
    # The work is done and written: at exit Python would still search every object for cycles,
    # ~0.45 s after a classic merge (numba's compiler state); the OS frees the memory instead.
    gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
