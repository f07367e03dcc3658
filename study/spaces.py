"""The search space of each arm, declared once: Optuna define-by-run functions and their description.

Both arms search the same training knobs; GAIN adds its own. Ranges are relative to the preset
(a learning rate of 1e-7 for the paper preset, 3e-3 for the CPU preset), so one declaration serves
every preset. The learning rate spans a factor of 4 around the preset's ([lr/2, 2 lr]): on the CPU
preset lr/3 leaves seeds at chance for up to 12 epochs and 3 lr leaves some stuck (bench/README.md, "plateau.py"),
so a wider range would spend the search on runs that say more about the seed than the setting. Parameter names are the RunConfig's dotted keys, so a trial's suggestion is a config
override as it stands; `Dim.name` is the short name of its `hp_<name>` column in trials.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from trainables.config import RunConfig

# Seeds of the three phases never meet: search seeds live in [0, CONFIRM_SEED_BASE) (the Optuna trial
# number), confirmation seeds in [CONFIRM_SEED_BASE, SELECT_SEED_BASE), selection seeds from SELECT_SEED_BASE.
CONFIRM_SEED_BASE = 1000
SELECT_SEED_BASE = 2000


@dataclass(frozen=True)
class Dim:
    name: str  # short name: the hp_<name> column
    key: str  # RunConfig dotted key, also the Optuna parameter name
    kind: Literal["float", "int", "categorical"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.key:<20} one of {list(self.choices)}"
        scale = "log" if self.log else "uniform"
        lo, hi = (f"{self.low:g}", f"{self.high:g}") if self.kind == "float" else (int(self.low), int(self.high))
        return f"{self.key:<20} {self.kind} in [{lo}, {hi}] ({scale})"


def search_dims(arm: str, base: RunConfig) -> list[Dim]:
    """The dimensions Optuna tunes for `arm`.

    `gain.cam_grad` is not searched: with the GAP -> FC head the Grad-CAM weights are a function of the
    FC parameters only, so letting gradients through them changes no trunk gradient (see GainConfig).
    """
    lr, batch = base.train.lr, base.train.batch_size
    dims = [
        Dim("lr", "train.lr", "float", lr / 2, lr * 2, log=True),
        Dim("weight_decay", "train.weight_decay", "float", 1e-6, 1e-2, log=True),
        # The preset's batch and half of it, not twice it: a batch twice as large takes half the steps per
        # epoch, and at the cpu preset's 20-epoch cap 3 of 20 baseline runs at batch 64 were still
        # improving when the cap ended them (README, "The cpu preset, calibrated").
        Dim("batch_size", "train.batch_size", "categorical", choices=(max(1, batch // 2), batch)),
    ]
    if arm == "gain":
        max_warmup = max(0, base.train.max_epochs // 3)
        dims += [
            Dim("alpha", "gain.alpha", "float", 0.1, 10.0, log=True),
            Dim("sigma", "gain.sigma", "float", 0.2, 0.8),
            Dim("omega", "gain.omega", "float", 3.0, 30.0, log=True),
            Dim("warmup_epochs", "gain.warmup_epochs", "int", 0, max_warmup),
        ]
    return dims


def all_dim_names() -> list[str]:
    """Every hp_ column name, baseline's first (the union over arms)."""
    probe = RunConfig()
    return [d.name for d in search_dims("gain", probe)]


class ArmSpace:
    """An Optuna define-by-run function: suggests the arm's knobs, returns the rest of the config.

    The returned constants make each Tune trial's config the complete flat RunConfig (plus its
    phase), so every trial folder records exactly what ran. The search seed is the Optuna trial
    number: distinct per trial, reproducible, and below CONFIRM_SEED_BASE. A class rather than a
    closure because OptunaSearch pickles it into Tune's searcher checkpoint.
    """

    def __init__(self, arm: str, base: RunConfig):
        self.arm = arm
        self.dims = search_dims(arm, base)
        keys = {d.key for d in self.dims}
        self.fixed = {k: v for k, v in base.to_flat().items() if k not in keys}
        self.fixed["arm"] = arm

    def __call__(self, trial: Any) -> dict[str, Any]:
        suggested = {d.key: d.suggest(trial) for d in self.dims}
        if trial.number >= CONFIRM_SEED_BASE:
            raise ValueError(f"search trial {trial.number}: search seeds must stay below {CONFIRM_SEED_BASE}")
        return {**self.fixed, **suggested, "seed": int(trial.number), "phase": "search"}
