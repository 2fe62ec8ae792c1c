"""Every knob of `smarthdr train`, with the seed paper's values as defaults.

Resolution order: these defaults, then a config file (`--config`, TOML or JSON), then flags given
on the command line. The resolved configuration is saved in the run folder as `config.json` and is
what `--resume` continues with.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from smarthdr_cli.errors import InputError
from smarthdr_cli.model.config import from_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # requires-python is 3.10: tomli is what became tomllib
    import tomli as tomllib

TEACHERS = ("ema", "none")
SCORERS = ("judge", "reference")
NORMALISATIONS = ("global", "scene", "rank")  # train/masking.py NORMALISATIONS
K_DOMAINS = ("mu", "linear")
LR_SCHEDULES = ("constant", "cosine")

# The rows of the seed's Table 3 as switches (plus the fully supervised reference row "sup").
ABLATION_ROWS: dict[str, dict[str, Any]] = {
    "i": {"teacher": "none", "uncertainty_loss": False},
    "ii": {"teacher": "ema", "uncertainty_loss": False, "patch_mask": False, "pixel_mask": False, "strong_aug": False},
    "iii": {"teacher": "ema", "uncertainty_loss": True, "patch_mask": False, "pixel_mask": False, "strong_aug": False},
    "iv": {"teacher": "ema", "uncertainty_loss": True, "patch_mask": True, "pixel_mask": False, "strong_aug": False},
    "v": {"teacher": "ema", "uncertainty_loss": True, "patch_mask": False, "pixel_mask": True, "strong_aug": False},
    "vi": {"teacher": "ema", "uncertainty_loss": True, "patch_mask": True, "pixel_mask": True, "strong_aug": False},
    "vii": {"teacher": "ema", "uncertainty_loss": True, "patch_mask": True, "pixel_mask": True, "strong_aug": True},
}


@dataclass(frozen=True)
class TrainConfig:
    """The resolved training configuration (see `smarthdr train --help` for each flag)."""

    # data
    labeled: str | None = None
    unlabeled: str | None = None
    unlabeled_limit: int | None = None  # at most this many unlabeled scenes/brackets, evenly spread (None: all)
    gap: float = 2.0  # library form of --unlabeled: seconds between two frames of one bracket, as `batch --gap`
    pseudo: str | None = None
    test: str | None = None
    cache_dir: str | None = None
    response: str = "auto"
    align: str = "none"
    patch: int = 64
    stride: int = 32
    # model
    model: str = "full"
    model_config: dict[str, Any] | None = None
    init_weights: str | None = None
    checkpoint_activations: bool = False
    detach_judge: bool = True  # GFHDRConfig.judge_detach
    # optimisation (Adam as in the seed)
    lr: float = 2e-4
    # The seed keeps the rate constant; cosine (to lr_min_ratio * lr at the last step) is for the
    # short schedules a CPU allows (the shipped weights were trained with it).
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.01
    clip_grad: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    batch: int = 64
    warmup_epochs: int = 30
    semi_epochs: int = 170
    steps_per_epoch: int | None = None
    # losses, eq. 9
    gamma: float = 2.2
    mu: float = 5000.0
    lambda_u: float = 1.0
    lambda_v: float = 0.01
    perceptual: bool = True
    vgg_weights: str | None = None
    uncertainty_loss: bool = True
    k_eps: float = 1e-6
    k_domain: str = "mu"
    k_weight: float = 1.0  # weight of L^k in eq. 9 (the seed: 1); 0 leaves the judge untrained
    # teacher and bi-level masking, eqs. 3, 11, 12
    teacher: str = "ema"
    ema_alpha: float = 0.999
    scorer: str = "judge"
    patch_mask: bool = True
    pixel_mask: bool = True
    tau_patch: float = 0.4
    tau_pixel: float = 0.4
    normalisation: str = "global"
    strong_aug: bool = True
    # run
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    validate_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        checks = [
            (self.teacher in TEACHERS, f"teacher {self.teacher!r}: choose {', '.join(TEACHERS)}"),
            (self.scorer in SCORERS, f"scorer {self.scorer!r}: choose {', '.join(SCORERS)}"),
            (self.normalisation in NORMALISATIONS, f"normalisation {self.normalisation!r}: choose {', '.join(NORMALISATIONS)}"),
            (self.k_domain in K_DOMAINS, f"k_domain {self.k_domain!r}: choose {', '.join(K_DOMAINS)}"),
            (self.patch >= 8 and self.stride >= 1, f"patch {self.patch} / stride {self.stride}: patch >= 8, stride >= 1"),
            (self.batch >= 1, f"batch {self.batch}: must be at least 1"),
            (self.warmup_epochs >= 0 and self.semi_epochs >= 0, "epochs cannot be negative"),
            (self.warmup_epochs + self.semi_epochs >= 1, "nothing to train: warmup_epochs + semi_epochs is 0"),
            (self.lr > 0, f"lr {self.lr}: must be positive"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule {self.lr_schedule!r}: choose {', '.join(LR_SCHEDULES)}"),
            (0.0 <= self.lr_min_ratio <= 1.0, f"lr_min_ratio {self.lr_min_ratio}: must be in [0, 1]"),
            (self.clip_grad is None or self.clip_grad > 0, f"clip_grad {self.clip_grad}: must be positive"),
            (0.0 <= self.ema_alpha <= 1.0, f"ema_alpha {self.ema_alpha}: must be in [0, 1]"),
            (0.0 <= self.tau_patch <= 1.0 and 0.0 <= self.tau_pixel <= 1.0, "tau_patch and tau_pixel must be in [0, 1]"),
            (self.k_eps > 0, f"k_eps {self.k_eps}: must be positive"),
            (math.isfinite(self.k_weight) and self.k_weight >= 0, f"k_weight {self.k_weight}: must be 0 or more"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be at least 1"),
            (self.unlabeled_limit is None or self.unlabeled_limit >= 1, "unlabeled_limit must be at least 1"),
            (math.isfinite(self.gap) and self.gap >= 0, f"gap {self.gap}: must be 0 or more seconds"),
            (self.threads is None or self.threads >= 1, f"threads {self.threads}: must be at least 1"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), f"device {self.device!r}: auto, cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(f"training config: {message}")

    def lr_at(self, progress: float) -> float:
        """The learning rate after `progress` (0..1) of the whole run; stateless, so a resumed
        run continues on the same curve."""
        if self.lr_schedule == "constant":
            return self.lr
        low = self.lr * self.lr_min_ratio
        return low + 0.5 * (self.lr - low) * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))

    @property
    def semi_supervised(self) -> bool:
        return self.teacher != "none" or self.pseudo is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "TrainConfig":
        return from_fields(cls, data, where, "settings")

    def updated(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)


def read_config_file(path: Path) -> dict[str, Any]:
    """Settings from a TOML or JSON file (keys are TrainConfig fields, dashes allowed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read config ({exc})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file holds a table of settings")
    return {key.replace("-", "_"): value for key, value in data.items()}


def resolve(file: Path | None, flags: dict[str, Any], ablation: str | None = None) -> TrainConfig:
    """Defaults <- ablation row <- config file <- flags that were given (None means not given)."""
    settings: dict[str, Any] = {}
    if ablation is not None:
        if ablation not in ABLATION_ROWS:
            raise InputError(f"--ablation {ablation}: choose one of {', '.join(ABLATION_ROWS)}")
        settings.update(ABLATION_ROWS[ablation])
    if file is not None:
        settings.update(read_config_file(file))
    settings.update({key: value for key, value in flags.items() if value is not None})
    return TrainConfig.from_dict(settings, str(file) if file else "flags")
