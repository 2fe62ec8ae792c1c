"""Bounded fuzz test of the command line, as a user sees it: exit code, stderr, stdout, output files.

Files are mutated (bit flips, overwritten bytes, 16/32-bit words, inserted and deleted runs,
truncation; offsets mostly in the headers) with a fixed seed, then fed to

* `smarthdr merge FRAMES... -o out.exr --backend classic --preview out.jpg -q`: brackets of
  synthetic PNG (8/16 bit), TIFF (8/16 bit, LZW), JPEG (EXIF, CMYK) and DNG frames made here,
  and the real JPEG bracket and RAW files of ../shared/data, one frame mutated;
* `smarthdr evaluate TEST_DIR --backend classic --save-dir OUT --json -q` on a scene whose ground
  truth (.exr/.hdr) is mutated (on success stdout must be exactly the JSON object);
* the readers themselves (read_ldr, read_hdr, the RAW readers), which must never print.

The contract checked for every case: exit code 0 or 2 (never 1, a traceback or a signal), at most
one line on stderr (`error: ...`), nothing at all on stderr or stdout on success with -q (no
third-party diagnostics), and on failure no file left in the output folder (neither out.exr nor
out.jpg nor a temporary). The real camera files are used only where ../shared/data is present.

Importing the CLI costs seconds (torch), so the cases run in one child process (this file run as
a script) that calls `smarthdr_cli.app.main` once per case with fds 1 and 2 redirected to files,
as a shell would; Python's warning registry is reset per case, so a warning shown once per process
is seen in every case. A child that dies (a signal in a C decoder) is reported for the case it was
running and restarted for the rest. Two cases also run as real `python -m smarthdr_cli`
processes, to tie the in-process results to what a user sees.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import numpy as np

SEED = int(os.environ.get("SMARTHDR_FUZZ_SEED", "14"))  # another seed for a wider search while developing
CASE_SECONDS = 60  # a case still running after this is a hang
FROBISHER = [f"brackets/frobisher/IMG_260{i}.jpg" for i in range(3)]


# ---------------------------------------------------------------------------------------------
# The child: runs cases in-process with real fds redirected, writes one JSON line per case
# ---------------------------------------------------------------------------------------------


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def _fds_to_files(folder: Path) -> Iterator[dict[str, str]]:
    """fds 1 and 2 onto files for the block (independent of the code under test); their text after."""
    texts: dict[str, str] = {}
    _flush_all()
    sinks = {fd: tempfile.TemporaryFile(dir=folder) for fd in (1, 2)}
    saved = {fd: os.dup(fd) for fd in sinks}
    for fd, sink in sinks.items():
        os.dup2(sink.fileno(), fd)
    try:
        yield texts
    finally:
        _flush_all()
        for fd, sink in sinks.items():
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            sink.seek(0)
            texts["stdout" if fd == 1 else "stderr"] = sink.read().decode("utf-8", "replace")
            sink.close()


class _Hang(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"still running after {CASE_SECONDS} s")


def _fresh_warnings(defaults: list) -> None:
    """The warning filters of a new process, and no memory of warnings already shown."""
    import warnings

    warnings.resetwarnings()  # also invalidates every module's registry of warnings shown once
    warnings.filters[:] = defaults


def _cli_case(case: dict) -> dict:
    from smarthdr_cli.app import main

    sys.argv = ["smarthdr", *case["argv"]]
    code: Any = None
    crash = ""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except _Hang:
        raise
    except BaseException:  # as `python -m smarthdr_cli` would: a traceback and exit code 1
        sys.stderr.write(traceback.format_exc())
        code = 1
        crash = traceback.format_exc(limit=-3)
    return {"code": code, "crash": crash}


def _reader_case(case: dict) -> dict:
    from smarthdr_cli.errors import SmartHDRError

    path = Path(case["path"])
    try:
        if case["reader"] == "ldr":
            from smarthdr_cli.io.ldr import read_ldr

            pixels, _ = read_ldr(path)
            assert pixels.ndim == 3 and pixels.shape[2] == 3 and np.isfinite(pixels).all()
        elif case["reader"] == "hdr":
            from smarthdr_cli.io.hdr import read_hdr

            rgb = read_hdr(path)
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and np.isfinite(rgb).all()
        else:
            from smarthdr_cli.io import raw

            raw.raw_metadata(path)
            balance = raw.camera_white_balance(path)
            raw.decode_raw(path, balance)
        return {"code": 0, "crash": ""}
    except SmartHDRError as exc:
        message = str(exc)
        return {"code": 2, "crash": "" if message and "\n" not in message else f"message {message!r}"}
    except _Hang:
        raise
    except BaseException:
        return {"code": 1, "crash": traceback.format_exc(limit=-3)}


def _child(cases_file: str, results_file: str) -> None:
    import warnings

    import smarthdr_cli.app  # noqa: F401 - imports before the first case, as a user's process does

    defaults = list(warnings.filters)
    streams = (sys.stdout, sys.stderr)
    cases = json.loads(Path(cases_file).read_text())
    scratch = Path(tempfile.mkdtemp(prefix="fds-", dir=Path(results_file).parent))  # in the test's tmp_path
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _alarm)
    with open(results_file, "a", encoding="utf-8") as results:
        for case in cases:
            results.write(json.dumps({"id": case["id"], "started": True}) + "\n")
            results.flush()
            os.fsync(results.fileno())
            _fresh_warnings(defaults)
            start = time.perf_counter()
            with _fds_to_files(scratch) as texts:
                if hasattr(signal, "SIGALRM"):
                    signal.alarm(CASE_SECONDS)
                try:
                    outcome = _cli_case(case) if case["kind"] == "cli" else _reader_case(case)
                except _Hang as exc:
                    outcome = {"code": "hang", "crash": str(exc)}
                finally:
                    if hasattr(signal, "SIGALRM"):
                        signal.alarm(0)
            if (sys.stdout, sys.stderr) != streams:  # e.g. a capture that did not put them back
                outcome["code"], outcome["crash"] = "streams", f"sys.stdout/sys.stderr left as {sys.stdout!r}, {sys.stderr!r}"
                sys.stdout, sys.stderr = streams
            outcome.update(texts, id=case["id"], seconds=time.perf_counter() - start)
            results.write(json.dumps(outcome) + "\n")
            results.flush()


# ---------------------------------------------------------------------------------------------
# The parent (pytest): seed files, mutations, cases, the contract
# ---------------------------------------------------------------------------------------------


def mutate(data: bytes, rng: np.random.Generator, hot: int = 4096) -> bytes:
    """`data` with 1-6 random edits, mostly within its first `hot` bytes (the headers)."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 7))):
        size = max(1, len(out))
        offset = int(rng.integers(0, min(hot, size))) if rng.random() < 0.75 else int(rng.integers(0, size))
        op = rng.choice(["flip", "byte", "word", "insert", "delete", "truncate", "extreme"])
        if op == "flip" and out:
            out[offset] ^= 1 << int(rng.integers(0, 8))
        elif op == "byte" and out:
            out[offset] = int(rng.integers(0, 256))
        elif op == "word":  # often a length, an offset or an image size
            value = int(rng.choice([0, 1, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0xFFFFFFFF, 0x7FFFFFFF, 0x10000]))
            out[offset : offset + 4] = struct.pack(str(rng.choice(["<I", ">I"])), value)
        elif op == "insert":
            out[offset:offset] = rng.integers(0, 256, int(rng.integers(1, 17))).astype(np.uint8).tobytes()
        elif op == "delete":
            del out[offset : offset + int(rng.integers(1, 65))]
        elif op == "truncate":
            del out[max(offset, 1) :]
        elif op == "extreme" and out:
            out[offset] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(out)


def _synthetic_frames() -> list[np.ndarray]:
    from smarthdr_cli.camera import render_bracket
    from smarthdr_cli.data.synth.fixed_scene import procedural_radiance

    return render_bracket(procedural_radiance(48, 64, seed=7), [1.0, 4.0, 16.0], noise=0.001, seed=7)


def _write_frames(folder: Path, kind: str, frames: list[np.ndarray]) -> list[Path]:
    """Three synthetic frames of one file kind, as cameras and editors write them."""
    import cv2
    import imageio.v3 as iio
    from PIL import Image

    from conftest import exif_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (frame, t) in enumerate(zip(frames, (100, 25, 6))):
        wide = frame.astype(np.uint16) * 257
        if kind == "jpg":
            path = exif_jpeg(folder / f"f{index}.jpg", frame, exposure=(1, t))
        elif kind == "cmyk.jpg":
            path = folder / f"f{index}.jpg"
            Image.fromarray(frame).convert("CMYK").save(path, "JPEG", quality=92)
        elif kind == "png16":
            path = folder / f"f{index}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(wide[:, :, ::-1]))
        elif kind == "tif16":
            path = folder / f"f{index}.tif"
            iio.imwrite(path, wide)
        elif kind == "lzw.tif":
            path = folder / f"f{index}.tif"
            cv2.imwrite(str(path), np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_TIFF_COMPRESSION, 5])
        elif kind == "dng":
            from test_fuzz import _dng_bytes

            path = folder / f"f{index}.dng"
            path.write_bytes(_dng_bytes([(0x829A, 5, 1, "I", [1, t])], 64, 48))
        else:  # "png", "tif": 8-bit
            path = folder / f"f{index}.{kind}"
            iio.imwrite(path, frame)
        paths.append(path)
    return paths


def _hdr_seeds(folder: Path) -> dict[str, bytes]:
    from smarthdr_cli.io.hdr import write_hdr

    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.linspace(0.0, 40.0, 48 * 64 * 3, dtype=np.float32).reshape(48, 64, 3)
    seeds = {}
    for suffix in (".exr", ".hdr"):
        write_hdr(folder / f"seed{suffix}", rgb)
        seeds[suffix] = (folder / f"seed{suffix}").read_bytes()
    return seeds


class Cases:
    """Builds the cases: files on disk under `root`, argument lists, what each must leave behind."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.items: list[dict] = []

    def _folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True)
        return folder

    def merge(self, name: str, frames: list[Path], mutate_one: bool, extra: list[str], hot: int = 4096) -> None:
        folder = self._folder(name)
        inputs = []
        victim = int(self.rng.integers(0, len(frames))) if mutate_one else -1
        for index, frame in enumerate(frames):
            if index == victim:
                target = folder / f"mutated-{frame.name}"
                target.write_bytes(mutate(frame.read_bytes(), self.rng, hot))
                inputs.append(str(target))
            else:
                inputs.append(str(frame))
        out = folder / "out"
        out.mkdir()
        argv = ["merge", *inputs, "-o", str(out / "out.exr"), "--backend", "classic", "--preview", str(out / "out.jpg"), "-q", *extra]
        self.items.append({"id": name, "kind": "cli", "argv": argv, "out": str(out), "control": not mutate_one})

    def evaluate(self, name: str, frames: list[np.ndarray], gt: bytes, suffix: str, mutated: bool) -> None:
        import imageio.v3 as iio

        scene = self._folder(name) / "Test" / "001"
        scene.mkdir(parents=True)
        for index, frame in enumerate(frames):
            iio.imwrite(scene / f"f{index}.tif", frame.astype(np.uint16) * 257)
        (scene / "exposure.txt").write_text("0\n2\n4\n")
        (scene / f"HDRImg{suffix}").write_bytes(mutate(gt, self.rng, 1024) if mutated else gt)
        out = self.root / name / "out"
        out.mkdir()
        argv = ["evaluate", str(scene.parent), "--backend", "classic", "--save-dir", str(out), "--json", "-q"]
        self.items.append({"id": name, "kind": "cli", "argv": argv, "out": str(out), "control": not mutated})

    def read(self, name: str, reader: str, data: bytes, suffix: str) -> None:
        path = self._folder(name) / f"file{suffix}"
        path.write_bytes(data)
        self.items.append({"id": name, "kind": "read", "reader": reader, "path": str(path), "control": False})


def synthetic_cases(root: Path) -> list[dict]:
    """Files made here by the project's own writers: these run everywhere."""
    cases = Cases(root, SEED)
    frames = _synthetic_frames()
    exposures = ["--exposures", "1/100,1/25,1/6"]
    for kind in ("png", "png16", "tif", "tif16", "lzw.tif", "jpg", "cmyk.jpg", "dng"):
        paths = _write_frames(root / "seeds" / kind, kind, frames)
        hot = 512 if kind == "dng" else 2048
        cases.merge(f"merge-{kind}-control", paths, False, exposures)
        for i in range(4):
            # Alignment (the default homography) on the small synthetic frames only: it is slow on real ones.
            cases.merge(f"merge-{kind}-{i}", paths, True, exposures if i % 2 == 0 or kind != "jpg" else [], hot)
        for i in range(3):
            cases.read(f"read-{kind}-{i}", "raw" if kind == "dng" else "ldr", mutate(paths[i].read_bytes(), cases.rng, hot), paths[i].suffix)
    seeds = _hdr_seeds(root / "seeds" / "hdr")
    for suffix, data in seeds.items():
        cases.evaluate(f"evaluate{suffix}-control", frames, data, suffix, False)
        for i in range(3):
            cases.evaluate(f"evaluate{suffix}-{i}", frames, data, suffix, True)
        for i in range(12):
            cases.read(f"read{suffix}-{i}", "hdr", mutate(data, cases.rng, 1024), suffix)
    return cases.items


def camera_cases(root: Path, shared: Path) -> list[dict]:
    """The real camera and HDR files of ../shared/data (never copied into the repository)."""
    cases = Cases(root, SEED + 1)
    frames = _synthetic_frames()
    real = [shared / name for name in FROBISHER]
    cases.merge("merge-frobisher-control", real, False, ["--align", "none"])
    for i in range(6):
        cases.merge(f"merge-frobisher-{i}", real, True, ["--align", "none"] + (["--exposures", "1/8,1,8"] if i % 2 else []))
    for i in range(2):
        cases.read(f"read-frobisher-{i}", "ldr", mutate(real[i].read_bytes(), cases.rng), ".jpg")
    kdc = shared / "raw" / "RAW_KODAK_DC50.KDC"
    copies = []
    for index in range(3):  # one RAW file as three "exposures": enough for the readers and the merge
        copies.append(root / "seeds" / "kdc" / f"k{index}.kdc")
        copies[-1].parent.mkdir(parents=True, exist_ok=True)
        copies[-1].write_bytes(kdc.read_bytes())
    raw_exposures = ["--align", "none", "--exposures", "1/100,1/25,1/6"]
    cases.merge("merge-kdc-control", copies, False, raw_exposures)
    cases.merge("merge-kdc-0", copies, True, raw_exposures)
    cases.merge("merge-arw-malformed", [shared / "malformed" / "exifpy_sony_a7iii_stripped.ARW", *copies[:2]], False, raw_exposures)
    cases.items[-1]["control"] = False  # it does not decode: a clear error is expected
    for name in ("raw/RAW_KODAK_DC50.KDC", "malformed/exiv2_canon_powershot_s40_truncated.crw"):
        for i in range(2):
            cases.read(f"read-{Path(name).stem}-{i}", "raw", mutate((shared / name).read_bytes(), cases.rng), Path(name).suffix.lower())
    for path in sorted((shared / "hdr").glob("*.exr")):
        for i in range(2):
            cases.read(f"read-{path.stem}-{i}", "hdr", mutate(path.read_bytes(), cases.rng), ".exr")
    for path in sorted((shared / "hdr-train").glob("*.hdr"))[:3]:
        cases.read(f"read-{path.stem}", "hdr", mutate(path.read_bytes(), cases.rng, 256), ".hdr")
    crlf = (shared / "malformed" / "memorial_CRLF_corrupted.hdr").read_bytes()
    cases.read("read-memorial-crlf", "hdr", crlf, ".hdr")
    cases.evaluate("evaluate-memorial-crlf", frames, crlf, ".hdr", False)
    cases.items[-1]["control"] = False
    cases.evaluate("evaluate-real-exr", frames, (shared / "hdr" / "ScanLines_Cannon.exr").read_bytes(), ".exr", True)
    return cases.items


def _env() -> dict[str, str]:
    """The environment of the child processes: they import the code this test imported (a
    checkout run with `python -m pytest` from its root need not be the installed one)."""
    import smarthdr_cli

    root = str(Path(smarthdr_cli.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def run_in_child(cases: list[dict], work: Path) -> dict[str, dict]:
    """Every case's outcome; a child killed by a signal is blamed on its case and restarted."""
    results: dict[str, dict] = {}
    pending = list(cases)
    attempt = 0
    while pending:
        attempt += 1
        cases_file, results_file = work / f"cases{attempt}.json", work / f"results{attempt}.jsonl"
        cases_file.write_text(json.dumps(pending))
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(cases_file), str(results_file)],
            capture_output=True, text=True, timeout=CASE_SECONDS * 2 + 30 * len(pending), env=_env(),
        )
        started = None
        for line in results_file.read_text().splitlines() if results_file.exists() else []:
            record = json.loads(line)
            if record.get("started"):
                started = record["id"]
            else:
                results[record["id"]] = record
                started = None
        if started is not None:  # died inside a case
            results[started] = {"id": started, "code": f"child died ({child.returncode})", "stderr": child.stderr[-2000:], "stdout": "", "crash": ""}
        missing = [c for c in pending if c["id"] not in results]
        if missing and started is None:
            raise AssertionError(f"the fuzz child stopped outside any case (exit {child.returncode}): {child.stderr[-3000:]}")
        assert not child.stderr.strip() or started is not None, f"the child printed outside the cases: {child.stderr[-2000:]}"
        pending = missing
    return results


def violations(case: dict, result: dict) -> list[str]:
    """What in `result` breaks the CLI's contract (empty: none)."""
    found = []
    code, stderr, stdout = result.get("code"), result.get("stderr", ""), result.get("stdout", "")
    lines = stderr.splitlines()
    if code not in (0, 2):
        found.append(f"exit code {code} {result.get('crash', '')[-600:]}")
    if case["kind"] == "cli" and case["argv"][0] == "evaluate" and code == 0:
        try:  # --json: exactly one JSON object on stdout, nothing else
            json.loads(stdout)
        except ValueError:
            found.append(f"stdout is not one JSON object: {stdout[:300]!r}")
    elif stdout:
        found.append(f"stdout: {stdout[:300]!r}")
    if case["kind"] == "read":
        if stderr:  # a reader says nothing itself: its error is raised, the CLI prints it
            found.append(f"printed {len(lines)} line(s): {stderr[:300]!r}")
        if result.get("crash"):
            found.append(result["crash"])
        return found
    if code == 0 and stderr:
        found.append(f"exit 0 with -q but stderr has {len(lines)} line(s): {stderr[:300]!r}")
    if code != 0 and (len(lines) != 1 or not lines[0].startswith("error: ")):
        found.append(f"{len(lines)} line(s) on stderr (want one 'error: ...' line): {stderr[:400]!r}")
    left = sorted(p.name for p in Path(case["out"]).iterdir())
    if code != 0 and left:
        found.append(f"failed but left {left}")
    wanted = ["out.exr", "out.jpg"] if case["argv"][0] == "merge" else ["001.exr", "001.jpg"]
    if code == 0 and left != wanted:
        found.append(f"succeeded but the output folder holds {left} (want {wanted})")
    if case["control"] and code != 0:
        found.append(f"an unmutated control case failed: {stderr[:300]!r}")
    return found


def check(cases: list[dict], work: Path) -> None:
    """Run `cases` and assert the contract for every one of them, reporting all violations at once."""
    start = time.perf_counter()
    results = run_in_child(cases, work)
    report = []
    for case in cases:
        for problem in violations(case, results[case["id"]]):
            report.append(f"{case['id']}: {problem}\n    {' '.join(case.get('argv', [case.get('path', '')]))}")
    codes = [results[c["id"]]["code"] for c in cases if not c["control"] and c["kind"] == "cli"]
    slowest = sorted(cases, key=lambda c: -results[c["id"]].get("seconds", 0))[:5]
    print(f"{len(cases)} cases in {time.perf_counter() - start:.1f} s; mutated: {codes.count(0)} succeeded, "
          f"{codes.count(2)} refused; slowest: " + ", ".join(f"{c['id']} {results[c['id']].get('seconds', 0):.1f} s" for c in slowest))
    assert not report, f"{len(report)} contract violation(s):\n" + "\n".join(report)
    # Both outcomes occur: the mutations neither always break the files nor never do.
    assert codes.count(0) > 0 and codes.count(2) > 0


def test_cli_fuzz_synthetic_files(tmp_path: Path):
    check(synthetic_cases(tmp_path / "cases"), tmp_path)


def test_cli_fuzz_camera_files(tmp_path: Path, shared_data: Path):
    check(camera_cases(tmp_path / "cases", shared_data), tmp_path)


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smarthdr_cli", *args], capture_output=True, text=True, timeout=300, env=_env())


def test_cli_fuzz_as_a_user_sees_it(tmp_path: Path):
    """The in-process results hold for real processes: a truncated PNG frame (libpng/OpenCV used to
    print 'PNG input buffer is incomplete') and a truncated OpenEXR ground truth (OpenEXR used to
    print its own report, on stderr and stdout)."""
    frames = _synthetic_frames()
    paths = _write_frames(tmp_path / "png", "png", frames)
    paths[1].write_bytes(paths[1].read_bytes()[: len(paths[1].read_bytes()) // 2])
    out = tmp_path / "out"
    out.mkdir()
    merged = _cli(["merge", *map(str, paths), "-o", str(out / "out.exr"), "--backend", "classic",
                   "--preview", str(out / "out.jpg"), "-q", "--exposures", "1/100,1/25,1/6"])
    assert merged.returncode == 2, merged.stderr
    assert len(merged.stderr.splitlines()) == 1 and merged.stderr.startswith("error: "), merged.stderr
    assert "f1.png" in merged.stderr and merged.stdout == "" and list(out.iterdir()) == []

    cases = Cases(tmp_path / "evaluate", SEED)
    seeds = _hdr_seeds(tmp_path / "hdr")
    cases.evaluate("truncated", frames, seeds[".exr"][: len(seeds[".exr"]) // 2], ".exr", False)
    scored = _cli(cases.items[0]["argv"])
    assert scored.returncode == 2, scored.stderr
    assert len(scored.stderr.splitlines()) == 1 and scored.stderr.startswith("error: "), scored.stderr
    assert "HDRImg.exr" in scored.stderr and scored.stdout == "", (scored.stdout, scored.stderr)


if __name__ == "__main__":  # the child process of test_cli_fuzz
    _child(sys.argv[1], sys.argv[2])
