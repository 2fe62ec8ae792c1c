"""`smarthdr train` and `smarthdr pseudo-label` on tiny synthetic data: the recipe runs, resumes
exactly after a kill, distributes over processes, and its outputs load where they should."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from smarthdr_cli.app import app
from smarthdr_cli.data.synth import SynthSettings, generate
from smarthdr_cli.errors import InputError
from smarthdr_cli.model.config import PRESETS, GFHDRConfig
from smarthdr_cli.model.gfhdr import GFHDR
from smarthdr_cli.model.weights import load_weights
from smarthdr_cli.train.config import ABLATION_ROWS, TrainConfig, resolve
from smarthdr_cli.train.loop import train

TINY = ["--model", "tiny", "--no-perceptual", "--batch", "4", "--patch", "32", "--stride", "16", "--steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthSettings(seed=1, height=64, width=96, split={"labeled": 2, "unlabeled": 3, "test": 1}))
    return root


def tiny_config(dataset: Path, tmp_path: Path, **changes) -> TrainConfig:
    settings = dict(
        labeled=str(dataset / "labeled"), unlabeled=str(dataset / "unlabeled"), cache_dir=str(tmp_path / "cache"),
        model="tiny", perceptual=False, batch=4, patch=32, stride=16, steps_per_epoch=2, warmup_epochs=1, semi_epochs=2,
    )
    settings.update(changes)
    return TrainConfig(**settings)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_full_recipe_writes_a_complete_run(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(dataset, tmp_path, test=str(dataset / "test")), run)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == ["warmup", "semi", "semi"]
    semi = records[1]
    for key in ("s_r", "s_k", "u_r", "u_k", "kept_fraction", "psnr_mu", "psnr_l", "samples_per_s"):
        assert np.isfinite(semi[key]), key
    assert 0.0 < semi["kept_fraction"] <= 1.0
    saved = json.loads((run / "config.json").read_text())
    assert saved["tau_patch"] == 0.4 and saved["ema_alpha"] == 0.999 and saved["lr"] == 2e-4
    model, card = load_weights(result.final)
    assert card["epochs"] == 3 and card["training"]["teacher"] == "ema"
    assert (run / "student-best.safetensors").is_file()
    # the pseudo labels of the last semi epoch are on disk for inspection
    assert len(list((run / "pseudo").glob("*.hdr.npy"))) == 3
    # the exported student is what `merge --weights` runs
    scene = sorted((dataset / "test").iterdir())[0]
    merged = subprocess.run(
        [sys.executable, "-m", "smarthdr_cli", "merge", str(scene), "-o", str(tmp_path / "out.exr"), "--backend", "cpu",
         "--weights", str(result.final), "--align", "none", "--json", "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert merged.returncode == 0, merged.stderr
    assert json.loads(merged.stdout)["weights"].startswith("student-final@")


def test_losses_fall_on_a_fixed_batch(dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(dataset, tmp_path, warmup_epochs=6, semi_epochs=0, steps_per_epoch=3, lr=2e-3, teacher="none")
    train(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["s_r"] < 0.8 * records[0]["s_r"]


def test_resume_after_kill_matches_uninterrupted(dataset: Path, tmp_path: Path) -> None:
    """SIGKILL the process once its first checkpoint is on disk, resume, compare the final weights."""
    base = ["--labeled", str(dataset / "labeled"), "--unlabeled", str(dataset / "unlabeled"), "--cache-dir", str(tmp_path / "cache"),
            *TINY, "--warmup-epochs", "1", "--semi-epochs", "3", "--threads", "1", "-q"]
    command = [sys.executable, "-m", "smarthdr_cli", "train"]
    whole = subprocess.run([*command, *base, "-o", str(tmp_path / "whole")], capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    process = subprocess.Popen([*command, *base, "-o", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 200
    while not (run / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run / "checkpoint.pt").exists() and not (run / "student-final.safetensors").exists()
    resumed = subprocess.run([*command, "--resume", str(run), "--threads", "1", "-q"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights_of(tmp_path / "whole" / "student-final.safetensors"), weights_of(run / "student-final.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_ddp_two_cpu_processes_match_one(dataset: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo processes splits each global batch; the result matches one process."""
    config = tiny_config(dataset, tmp_path, warmup_epochs=1, semi_epochs=1, model_config={**PRESETS["tiny"].to_dict(), "drop_path_rate": 0.0})
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    single = train(config, tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "smarthdr_cli",
         "train", "--config", str(config_file), "-o", str(tmp_path / "ddp"), "-q"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    a, b = weights_of(single.final), weights_of(tmp_path / "ddp" / "student-final.safetensors")
    torch.manual_seed(config.seed)
    start = GFHDR(GFHDRConfig.from_dict(config.model_config)).state_dict()
    # Same batches, gradients averaged over ranks, masked means weighted by each rank's share of
    # kept pixels: the runs agree up to float reduction order (measured: 2e-7 of the distance moved).
    moved = sum(float((a[n] - start[n]).abs().sum()) for n in a)
    apart = sum(float((a[n] - b[n]).abs().sum()) for n in a)
    assert moved > 0 and apart < 1e-4 * moved, (apart, moved)
    records = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (tmp_path / "single", tmp_path / "ddp")]
    assert records[0][0]["s_r"] == pytest.approx(records[1][0]["s_r"], rel=1e-3)
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 2  # rank 0 alone writes


def test_pseudo_label_folder_and_training_from_it(dataset: Path, tmp_path: Path, runner) -> None:
    config = tiny_config(dataset, tmp_path, warmup_epochs=1, semi_epochs=0, teacher="none")
    weights = train(config, tmp_path / "warm").final
    out = tmp_path / "pseudo"
    result = runner.invoke(app, ["pseudo-label", "--unlabeled", str(dataset / "unlabeled"), "--weights", str(weights), "-o", str(out),
                                 "--patch", "32", "--stride", "16", "--cache-dir", str(tmp_path / "cache"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert len(summary["scenes"]) == 3 and 0 < summary["kept_fraction"] <= 1
    for scene in summary["scenes"]:
        folder = out / scene["name"]
        assert {p.name for p in folder.iterdir()} == {"pseudo.exr", "uncertainty.exr", "preview.jpg", "patch_mask.png", "pixel_mask.png"}
    again = runner.invoke(app, ["pseudo-label", "--unlabeled", str(dataset / "unlabeled"), "--weights", str(weights), "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    trained = train(tiny_config(dataset, tmp_path, unlabeled=None, pseudo=str(out), warmup_epochs=1, semi_epochs=1), tmp_path / "offline")
    record = trained.history[-1]
    assert record["stage"] == "semi" and record["kept_fraction"] == pytest.approx(summary["kept_fraction"])


def test_masks_drop_what_a_confident_wrong_teacher_gets_wrong(dataset: Path, tmp_path: Path) -> None:
    """With the reference scorer, pseudo-label pixels that disagree with the reference are dropped."""
    from smarthdr_cli.data.layouts import discover_scenes
    from smarthdr_cli.data.patches import prepare_scenes
    from smarthdr_cli.train.masking import MaskSettings
    from smarthdr_cli.train.pseudo_label import label_scenes

    scenes = prepare_scenes(discover_scenes(dataset / "unlabeled"), tmp_path / "cache")

    class Ghosting(torch.nn.Module):
        """Returns the linearised long frame: right where static, ghosted where objects move."""

        config = PRESETS["tiny"]

        def forward(self, x1, x2, x3, with_uncertainty=True):
            return x3[:, 3:6].clamp(0, 1), torch.zeros_like(x3[:, :3])

    pseudo_labeled = label_scenes(Ghosting(), scenes, tmp_path / "work", MaskSettings(size=32, stride=16), scorer="reference", weak_aug=False)
    for item in pseudo_labeled:
        motion = cv2.imread(str(dataset / "unlabeled" / item.name / "motion.pgm"), cv2.IMREAD_GRAYSCALE) > 127
        if motion.sum() < 50:
            continue
        assert item.mask.pixel[motion].mean() < item.mask.pixel[~motion].mean()


def test_cli_errors_are_one_line(dataset: Path, tmp_path: Path, runner) -> None:
    cases = [
        (["train", "--labeled", str(tmp_path / "nope"), "--no-teacher", "-o", str(tmp_path / "r1")], "no such folder"),
        (["train", "--labeled", str(dataset / "unlabeled"), "--no-teacher", "-o", str(tmp_path / "r2"), *TINY], "no ground-truth"),
        (["train", "--labeled", str(dataset / "labeled"), "-o", str(tmp_path / "r3"), *TINY], "needs --unlabeled"),
        (["train", "--labeled", str(dataset / "labeled"), "--no-teacher", "-o", str(tmp_path / "r4"), "--vgg-weights", str(tmp_path / "vgg.pth"), "--model", "tiny"], "vgg.pth"),
        (["train", "--resume", str(tmp_path / "none")], "not a training run folder"),
        (["train", "--labeled", str(dataset / "labeled"), "--no-teacher", "--tau-patch", "2", "-o", str(tmp_path / "r5")], "tau_patch"),
        (["train", "--labeled", str(dataset / "labeled"), "--no-teacher", "--ablation", "ix", "-o", str(tmp_path / "r6")], "--ablation ix"),
        (["train", "--labeled", str(dataset / "labeled"), "--no-teacher", "--config", str(tmp_path / "missing.toml"), "-o", str(tmp_path / "r7")], "cannot read config"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output, result.output
    assert not (tmp_path / "r4").exists()  # nothing is created before the inputs are known to be good


def test_existing_run_folder_is_not_mixed(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    from smarthdr_cli.errors import OutputError

    with pytest.raises(OutputError, match="--resume"):
        train(tiny_config(dataset, tmp_path), run)


def test_config_file_flags_and_ablation_rows(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text('lr = 1e-3\ntau-patch = 0.3\nteacher = "ema"\n')
    config = resolve(file, {"lr": 5e-4, "batch": None}, ablation="iv")
    assert config.lr == 5e-4 and config.tau_patch == 0.3 and config.batch == 64
    assert config.patch_mask and not config.pixel_mask and not config.strong_aug
    assert set(ABLATION_ROWS) == {"i", "ii", "iii", "iv", "v", "vi", "vii"}
    assert resolve(None, {}, "i").teacher == "none"


def test_cosine_schedule_decays_to_its_floor_and_clipping_trains(dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(dataset, tmp_path, teacher="none", warmup_epochs=4, semi_epochs=0, lr=1e-3,
                         lr_schedule="cosine", lr_min_ratio=0.1, clip_grad=0.5)
    assert config.lr_at(0.0) == pytest.approx(1e-3) and config.lr_at(1.0) == pytest.approx(1e-4)
    assert config.lr_at(0.5) == pytest.approx(5.5e-4)
    train(config, tmp_path / "run")
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the rate of each epoch's last step: progress (e + 1/2) / 4 with 2 steps per epoch
    assert rates == pytest.approx([config.lr_at((e + 0.5) / 4) for e in range(4)])
    assert rates[0] > rates[1] > rates[2] > rates[3] > 1e-4
    assert TrainConfig(lr=1e-3).lr_at(0.9) == 1e-3  # constant: the seed
    with pytest.raises(InputError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_ablation_script_runs_on_given_folders(dataset: Path, tmp_path: Path) -> None:
    """bench/reproduce_ablation.py pointed at dataset folders (as at a Kalantari download)."""
    out = tmp_path / "ablation.json"
    command = [
        sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "reproduce_ablation.py"),
        "--labeled", str(dataset / "labeled"), "--unlabeled", str(dataset / "unlabeled"), "--test", str(dataset / "test"),
        "--rows", "i", "vii", "--seeds", "2", "--model", "tiny", "--warmup-epochs", "1", "--semi-epochs", "1",
        "--steps-per-epoch", "2", "--batch", "4", "--work", str(tmp_path / "work"), "--out", str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["row"] for row in report["table"]] == ["i", "vii"] and len(report["runs"]) == 4
    for row in report["table"]:
        assert np.isfinite(row["psnr_mu"]) and np.isfinite(row["psnr_mu_margin"]) and row["psnr_mu_margin"] >= 0
    assert "| vii |" in done.stdout
    work = tmp_path / "work" / "runs"
    for seed in (0, 1):  # every row of a seed starts from that seed's warm-up student, with or without L^k as the row trains
        for row, k in (("i", 0), ("vii", 1)):
            config = json.loads((work / f"{row}-detach-seed{seed}" / "config.json").read_text())
            assert config["init_weights"] == str(work / f"warmup-k{k}-detach-seed{seed}" / "student-final.safetensors")
            assert config["warmup_epochs"] == 0 and config["semi_epochs"] == 1
    # a second call continues: the finished runs and warm-ups are reused, only row ii is trained
    warmup = work / "warmup-k0-detach-seed0" / "student-final.safetensors"
    before = warmup.stat().st_mtime_ns
    again = subprocess.run([*command[:command.index("--rows") + 1], "i", "ii", "vii", *command[command.index("--seeds"):]], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [row["row"] for row in report["table"]] == ["i", "ii", "vii"] and len(report["runs"]) == 6
    assert warmup.stat().st_mtime_ns == before and again.stdout.count('"row": "ii"') == 2 and '"row": "vii"' not in again.stdout


def test_teacher_augmentation_is_undone(dataset: Path, tmp_path: Path) -> None:
    """A pixel-wise teacher gives the same pseudo label whatever weak augmentation it sees."""
    from smarthdr_cli.data.layouts import discover_scenes
    from smarthdr_cli.data.patches import prepare_scenes
    from smarthdr_cli.train import augment
    from smarthdr_cli.train.pseudo_label import teacher_predict

    class Reference(torch.nn.Module):
        config = PRESETS["tiny"]

        def forward(self, x1, x2, x3, with_uncertainty=True):
            return x2[:, 3:6].clamp(0, 1), x1[:, :3]

    scene = prepare_scenes(discover_scenes(dataset / "unlabeled")[:1], tmp_path / "cache")[0]
    plain = teacher_predict(Reference(), scene, gamma=2.2, device=torch.device("cpu"))
    for aug in (augment.Augmentation(vflip=True), augment.Augmentation(rotate=-1), augment.Augmentation(vflip=True, rotate=-1)):
        moved = teacher_predict(Reference(), scene, gamma=2.2, device=torch.device("cpu"), aug=aug)
        for a, b in zip(plain, moved):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6)


def test_judge_gradient_switch_reaches_the_network_and_its_weights(dataset: Path, tmp_path: Path) -> None:
    from smarthdr_cli.train.loop import model_config

    assert model_config(TrainConfig(model="tiny")).judge_detach is True  # the default
    assert model_config(TrainConfig(model="tiny", detach_judge=False)).judge_detach is False
    assert resolve(None, {"detach_judge": False}).detach_judge is False
    result = train(tiny_config(dataset, tmp_path, warmup_epochs=1, semi_epochs=0, teacher="none", detach_judge=False), tmp_path / "run")
    loaded, card = load_weights(result.final)
    assert loaded.config.judge_detach is False and card["config"]["judge_detach"] is False
    assert json.loads((tmp_path / "run" / "config.json").read_text())["detach_judge"] is False


def test_runs_from_before_the_detach_resume_with_the_gradient_through(tmp_path: Path) -> None:
    from smarthdr_cli.train.checkpoint import resumed_config

    old = TrainConfig(model="tiny").to_dict()
    del old["detach_judge"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert resumed_config(tmp_path).detach_judge is False
    (tmp_path / "config.json").write_text(json.dumps(TrainConfig(model="tiny").to_dict()))
    assert resumed_config(tmp_path).detach_judge is True
