"""The resolved plan of one study: what runs, on which seeds, with what budget, and what it costs.

`StudyConfig` is built once from the study's options (study/options.py: defaults < --config file <
command line) and is the only thing the protocol and its phases read. `identity()` is the part that decides results: a resumed study must
match it exactly; resources (CPUs, GPUs, concurrency, cluster address) may change between sessions.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.sequential import (BLOCK, DEFAULT_MARGIN_PP, DEFAULT_SPENDING, FIRST_LOOK, SPENDING, Design,
                                 margin_problem, schedule)
from trainables.config import ARMS, PRESETS, ConfigError, RunConfig, preset

from .spaces import CONFIRM_SEED_BASE, SELECT_SEED_BASE, search_dims

# The order runs start in: every GAIN run (about twice a baseline run) before a baseline run, so a
# phase ends on short runs and the last slot to free up waits less (the longest-processing-time rule).
LONGEST_FIRST = tuple(sorted(ARMS, key=lambda arm: arm != "gain"))
PRIMARY_RULE = "best mean validation accuracy among GAIN alphas in confirmation"
TUNED = "tuned"  # in --alphas: the alpha of GAIN's selected configuration
AUTO = "auto"  # --seeds auto: a staged confirmation (with --max-seeds)
PAPER_ALPHA = 1.0  # the paper's alpha
SELECT_RULES = {"overall": "validation accuracy", "worst-group": "worst-group validation accuracy"}
# Config keys set from the trial's resources, not part of what the study compares.
RESOURCE_KEYS = ("train.num_threads", "train.device")


class UsageError(ConfigError):
    """A bad value of a study option, from the command line or the config file: a ConfigError that names
    the option to fix (`flag`). The launcher prints it as one line and exits 2."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@contextmanager
def blame(flag: str) -> Iterator[None]:
    """A ConfigError from trainables (which knows config keys, not the study's options) as a UsageError
    naming `flag`: the one place where one becomes the other."""
    try:
        yield
    except UsageError:
        raise
    except ConfigError as e:
        raise UsageError(flag, str(e).removeprefix(flag + ": ")) from None


@dataclass(frozen=True)
class StudyConfig:
    name: str = "gainstudy"
    storage: str = "runs"  # parent folder (or URI) of runs/<name>/
    optuna_storage: str | None = None  # SQLAlchemy URL; None: sqlite in the run folder
    preset: str = "cpu"
    overrides: tuple[tuple[str, Any], ...] = ()  # RunConfig dotted keys from --data / --set
    trials: int = 50  # search trials, both arms together
    seeds: int = FIRST_LOOK  # confirmation seeds (each shared by both arms); with max_seeds: the first stage's
    # Sequential confirmation (--seeds auto --max-seeds N): stages of BLOCK more seeds up to max_seeds, the
    # verdict after each with alpha-spending boundaries; None: one stage of `seeds`.
    max_seeds: int | None = None
    margin: float = DEFAULT_MARGIN_PP  # equivalence margin, percentage points of test accuracy (1.0 = +-1 pp)
    # GAIN alphas in confirmation, one Holm family: numbers and/or "tuned" (the selected alpha).
    # Default: the tuned alpha next to the paper's alpha = 1.
    alphas: tuple[float | str, ...] = (TUNED, PAPER_ALPHA)
    select: str = "overall"  # what early stopping and selection score: "overall" or "worst-group"
    selection_k: int = 3  # selection phase: each arm's top-k search configurations ...
    selection_seeds: int = 2  # ... re-run on this many fresh seeds; 0 skips the phase
    seed: int = 0  # seeds the TPE samplers
    grace_period: int | None = None  # ASHA: epochs before the first cut; None: max_epochs // 4
    reduction_factor: int = 3  # ASHA: keep 1 in this many at each rung
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many as the cluster's resources allow
    address: str | None = None  # None: a local Ray; "auto" or HOST:PORT joins a cluster
    dashboard: bool = True
    dashboard_port: int = 8265
    verbosity: int = 1  # 0 quiet, 1 live view, 2 Ray's own output and trial logs
    # Train/val/test images of a photo source, counted by the launcher from its files: the cost model's
    # sizes (the preset's n_train/n_val/n_test describe the benchmark, not a folder). None: the preset's.
    data_images: tuple[int, int, int] | None = None
    base: RunConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _need(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "--name",
              f"{self.name!r} is not a folder name: use letters, digits, '-' or '_'")
        _need(self.preset in PRESETS, "--preset", f"unknown preset {self.preset!r}: use one of {', '.join(PRESETS)}")
        _need(self.trials >= 2, "--trials", f"{self.trials}: need at least 2 (one search trial per arm)")
        _need(self.trials // 2 < CONFIRM_SEED_BASE, "--trials",
              f"{self.trials}: at most {2 * CONFIRM_SEED_BASE - 1} (search seeds must stay below {CONFIRM_SEED_BASE})")
        _need(1 <= self.seeds <= SELECT_SEED_BASE - CONFIRM_SEED_BASE, "--seeds",
              f"{self.seeds}: use 1..{SELECT_SEED_BASE - CONFIRM_SEED_BASE} confirmation seeds (10 or more for power)")
        _need(margin_problem(self.margin) is None, "--margin", margin_problem(self.margin) or "")
        if self.max_seeds is not None:
            _need(self.max_seeds >= self.seeds, "--max-seeds",
                  f"{self.max_seeds} is below --seeds ({self.seeds}, the first stage; --seeds auto starts with "
                  f"{FIRST_LOOK}): use at least {self.seeds}")
            _need(self.max_seeds <= SELECT_SEED_BASE - CONFIRM_SEED_BASE, "--max-seeds",
                  f"{self.max_seeds}: at most {SELECT_SEED_BASE - CONFIRM_SEED_BASE} confirmation seeds")
            _need(self.seeds >= 2, "--seeds", f"{self.seeds}: a staged confirmation needs at least 2 seeds per look")
        _need(len(self.alphas) >= 1 and all(a == TUNED or (isinstance(a, float) and a > 0 and math.isfinite(a))
                                            for a in self.alphas), "--alphas",
              f"{self.alphas}: use positive numbers and/or 'tuned', e.g. --alphas tuned,1 or 0.5,1,2")
        _need(len(set(self.alphas)) == len(self.alphas), "--alphas", f"{self.alphas}: values repeat")
        _need(self.select in SELECT_RULES, "--select", f"{self.select!r}: use one of {', '.join(SELECT_RULES)}")
        _need(self.selection_k >= 1, "--selection-k", f"{self.selection_k}: use at least 1")
        _need(0 <= self.selection_seeds <= 1000, "--selection-seeds",
              f"{self.selection_seeds}: use 0 (no selection phase) to 1000")
        _need(self.cpus_per_trial > 0, "--cpus-per-trial", f"{self.cpus_per_trial}: use a positive number")
        _need(self.gpus_per_trial >= 0, "--gpus-per-trial", f"{self.gpus_per_trial}: use 0 or a positive fraction")
        _need(self.max_concurrent is None or self.max_concurrent >= 1, "--max-concurrent",
              f"{self.max_concurrent}: use at least 1")
        _need(self.reduction_factor >= 2, "--reduction-factor", f"{self.reduction_factor}: use at least 2")
        _need(1 <= self.dashboard_port <= 65535, "--dashboard-port", f"{self.dashboard_port}: not a TCP port")
        # numpy (under Optuna's TPE) takes seeds in [0, 2**32); each arm's sampler seed is 2 * seed + arm.
        _need(0 <= self.seed < 2 ** 31, "--seed", f"{self.seed}: use a whole number in 0..{2 ** 31 - 1}")
        if self.optuna_storage is not None:
            _check_optuna_url(self.optuna_storage)
        with blame("--data/--set"):
            base = preset(self.preset, **dict(self.overrides)).replace(**{
                "train.select": self.select,
                "train.num_threads": max(1, int(self.cpus_per_trial)),
                "train.device": "cuda" if self.gpus_per_trial > 0 else "cpu",
            })
        object.__setattr__(self, "base", base)
        if self.grace_period is not None:
            _need(1 <= self.grace_period <= base.train.max_epochs, "--grace-period",
                  f"{self.grace_period}: use 1..{base.train.max_epochs} (the preset's max_epochs)")

    # ---- derived plan -------------------------------------------------------------------------
    @property
    def run_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{Path(self.run_dir).resolve()}/optuna.db"

    @property
    def grace(self) -> int:
        return self.grace_period or max(1, self.base.train.max_epochs // 4)

    @property
    def search_split(self) -> dict[str, int]:
        # Equal budget: an odd --trials leaves its last trial unused rather than favour one arm.
        return {arm: self.trials // 2 for arm in ARMS}

    @property
    def confirm_seeds(self) -> list[int]:
        return [CONFIRM_SEED_BASE + k for k in range(self.seeds)]

    @property
    def search_seeds(self) -> range:
        return range(self.trials // 2)

    @property
    def select_seeds(self) -> list[int]:
        return [SELECT_SEED_BASE + k for k in range(self.selection_seeds)]

    def n_select(self) -> int:
        """Selection runs per arm: the same for both arms."""
        return min(self.selection_k, self.trials // 2) * self.selection_seeds

    def resolve_alphas(self, tuned: float) -> list[float]:
        """The confirmed alphas, "tuned" replaced by the selected alpha; a duplicate runs once."""
        out: list[float] = []
        for a in self.alphas:
            value = float(tuned) if a == TUNED else float(a)
            if not any(math.isclose(value, b, rel_tol=1e-9) for b in out):
                out.append(value)
        return out

    def alpha_roles(self, tuned: float) -> dict[str, float]:
        roles = {"tuned": float(tuned)} if TUNED in self.alphas else {}
        if any(a != TUNED and math.isclose(float(a), PAPER_ALPHA) for a in self.alphas):
            roles["paper"] = PAPER_ALPHA
        return roles

    @property
    def sequential(self) -> bool:
        return self.max_seeds is not None and self.max_seeds > self.seeds

    def design(self) -> Design:
        """The declared decision design: the margin (as a fraction) and the looks."""
        looks = schedule(self.seeds, self.max_seeds) if self.sequential else (self.seeds,)
        return Design(self.margin / 100, looks, DEFAULT_SPENDING)

    def sampler_seed(self, arm: str) -> int:
        return self.seed * 2 + ARMS.index(arm)

    def n_confirm(self, n_alphas: int | None = None) -> int:
        """At most; fewer when the tuned alpha equals a listed one."""
        n_alphas = n_alphas if n_alphas is not None else len(self.alphas)
        return self.seeds * (1 + n_alphas)

    def identity(self) -> dict[str, Any]:
        """What must not change when a study resumes."""
        flat = {k: v for k, v in self.base.to_flat().items() if k not in RESOURCE_KEYS}
        flat.pop("arm"), flat.pop("seed")
        return {
            "name": self.name, "preset": self.preset, "trials": self.trials,
            "seeds": self.confirm_seeds, "alphas": list(self.alphas),
            "margin_pp": self.margin, "max_seeds": self.max_seeds if self.sequential else None,
            "spending": DEFAULT_SPENDING if self.sequential else None,
            "select": self.select, "selection_k": self.selection_k, "select_seeds": self.select_seeds,
            "seed": self.seed, "grace_period": self.grace, "reduction_factor": self.reduction_factor,
            "optuna_storage": self.optuna_url, "run_config": flat,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.identity()
        design = self.design()
        out.update({
            # What decides, declared before the first trial (analysis.sequential.Design): the looks and the
            # nominal levels of each test at each look.
            "design": {**design.to_json(), "block": BLOCK if self.sequential else None},
            "data": dataclasses.asdict(self.base.data),
            "overrides": dict(self.overrides),
            "search_seeds": [self.search_seeds.start, self.search_seeds.stop - 1],
            "sampler_seeds": {arm: self.sampler_seed(arm) for arm in ARMS},
            "storage": self.storage, "cpus_per_trial": self.cpus_per_trial,
            "gpus_per_trial": self.gpus_per_trial, "max_concurrent": self.max_concurrent,
            "address": self.address,
        })
        return out

    def describe_model(self) -> str:
        m = self.base.model
        if m.arch == "efficientnet_lite0":
            return (f"EfficientNet-Lite0 (weights {m.weights}, stem + {m.frozen_convs} of 16 blocks frozen, "
                    f"Grad-CAM on stage {m.cam_block})")
        return f"VGG16 width 1/{m.width}"

    def describe(self, data: str | None = None) -> str:
        """The plan printed by --dry-run; `data` describes a photo source (what the launcher recognised)."""
        b = self.base
        split = self.search_split
        alphas = ", ".join("the tuned alpha" if a == TUNED else f"{a:g}" for a in self.alphas)
        rule = SELECT_RULES[self.select]
        sizes = (f"{b.data.n_train}/{b.data.n_val}/{b.data.n_test} train/val/test images per class"
                 if self.data_images is None else
                 "{:,}/{:,}/{:,} train/val/test images".format(*self.data_images))
        lines = [
            f"study {self.name!r} -> {self.run_dir}",
            f"  preset {self.preset}: {b.data.image_size}px, {sizes}, {self.describe_model()}, up to "
            f"{b.train.max_epochs} epochs (patience {b.train.patience})",
            "  data: " + (data or f"{b.data.source} (camouflage {b.data.camouflage}, bias {b.data.bias}, "
                          f"seed {b.data.seed})"),
            "",
            f"1. search: {split['baseline']} baseline + {split['gain']} GAIN trials"
            + (f" (--trials {self.trials} is odd: its last trial is not run, to keep the budget equal)"
               if self.trials % 2 else ""),
            f"   one Tune experiment, the arms' trials alternating; Optuna TPE and ASHA per arm (sampler seeds "
            f"{self.sampler_seed('baseline')}, {self.sampler_seed('gain')}); "
            f"ASHA on the objective ({rule}, ties broken by validation log loss): grace {self.grace} epochs, "
            f"reduction factor {self.reduction_factor}, max {b.train.max_epochs} epochs; both arms select among "
            f"the same epochs with the same patience",
            f"   search seeds {self.search_seeds.start}..{self.search_seeds.stop - 1} (the Optuna trial number); "
            "test split not evaluated",
        ]
        for arm in ARMS:
            lines.append(f"   {arm} space:")
            lines += [f"     {d.describe()}" for d in search_dims(arm, b)]
        seeds = self.confirm_seeds
        k = min(self.selection_k, self.trials // 2)
        if self.selection_seeds:
            sel = self.select_seeds
            lines += ["", f"2. selection: {self.n_select()} baseline + {self.n_select()} GAIN runs = each arm's top {k} "
                          f"search configurations x {self.selection_seeds} fresh seeds ({sel[0]}..{sel[-1]})",
                      "   full training with early stopping, validation only; per arm the configuration with the best "
                      "mean objective wins (ties: the better search rank)"]
        else:
            lines += ["", "2. selection: skipped (--selection-seeds 0): each arm's best search trial is confirmed"]
        design = self.design()
        stages = (f"   in stages while the verdict is undecided: looks at {', '.join(map(str, design.looks))} seeds; "
                  f"{SPENDING[DEFAULT_SPENDING]} alpha spending; up to {self.max_seeds * (1 + len(self.alphas))} runs"
                  if self.sequential else "")
        lines += [
            "",
            f"3. confirmation: up to {self.n_confirm()} runs = {self.seeds} seeds x (baseline + GAIN at {alphas}; "
            "one Holm family)" + (" in the first stage" if self.sequential else ""),
            *([stages] if stages else []),
            f"   seeds {seeds[0]}..{seeds[-1]}, each shared by both arms (same data, order, initialisation); "
            "full training with early stopping, test split evaluated once per run",
            f"   primary comparison: {PRIMARY_RULE} vs baseline",
            f"   verdict: GAIN better / worse / equivalent within ±{self.margin:g} pp / inconclusive "
            "(paired t-test and TOST on test accuracy, Holm across the alphas)",
            "",
            "4. analysis: report from the tables in the run folder",
            "",
            "resources: " + (f"cluster at {self.address}" if self.address else "local Ray")
            + f", {self.cpus_per_trial:g} CPU" + (f" + {self.gpus_per_trial:g} GPU" if self.gpus_per_trial else "")
            + " per trial" + (f", at most {self.max_concurrent} at once" if self.max_concurrent else ""),
        ]
        est = estimate(self)
        lines.append(
            f"estimated cost: {est['search_core_s'] / 60:.0f} + {est['select_core_s'] / 60:.0f} + "
            f"{est['confirm_core_s'] / 60:.0f} core-minutes (search + selection + confirmation); about "
            f"{est['wall_s'] / 60:.0f} min wall-clock with {est['concurrency']} trials at once (rough: calibrated on "
            "the 2-core reference machine)"
            + (f"; confirmation of the first stage only: all stages cost up to "
               f"{estimate(dataclasses.replace(self, seeds=self.max_seeds))['confirm_core_s'] / 60:.0f} core-minutes"
               if self.sequential else "")
        )
        return "\n".join(lines)


def _need(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise UsageError(flag, message)


def _check_optuna_url(url: str) -> None:
    # Checked before anything starts: the URL is part of what a resume must match.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    fix = "use a SQLAlchemy URL such as sqlite:////abs/path/optuna.db or postgresql://user@host/db, or leave it out"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise UsageError("--optuna-storage", f"{url!r}: unknown database kind {url.split(':')[0]!r}: {fix}") from None
    except ArgumentError:
        raise UsageError("--optuna-storage", f"{url!r} is not a SQLAlchemy URL: {fix}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise UsageError("--optuna-storage", f"{url!r}: its database driver is not installed ({e.name or e}): "
                                             f"pip install it into {sys.prefix}, or leave the option out") from None
    _need(parsed.get_backend_name() != "sqlite" or parsed.database not in (None, "", ":memory:"), "--optuna-storage",
          f"{url!r} is an in-memory database that ends with the launcher: name a file, e.g. sqlite:////abs/optuna.db")


# ---- cost model --------------------------------------------------------------------------------
# Seconds per image-pass of VGG16 on one CPU core as a function of work = (size/64)^2 * 256 / width^2,
# fitted on the 2-core reference machine, two trials at once (the default study measured there on
# 2026-11-27: median 1.35 s per baseline epoch and 2.52 s per GAIN epoch of 500 training and 400
# validation images; search trials ran 0.47 of max_epochs, confirmation runs 0.85; a trial costs
# about 2 slot-seconds besides its epochs; start-up 14 s and the report 30 s, since cut to ~8 s on
# the same tables). Both per-image costs were then scaled by 0.8: after the loop made its batches from
# tensors uploaded once, three default studies' trials took 1,058-1,090 trial-seconds against 1,377
# modelled; start-up is ~10 s and the report ~7 s since the launcher stopped importing torch.
_SEC_PER_WORK = 1.2e-3
_SEC_PER_IMAGE = 0.45e-3  # per-image cost that does not shrink with the network (augmentation, small ops)
_GAIN_FACTOR = 2.1  # GAIN's step: Grad-CAM and a second forward/backward for the masked batch
_TRIAL_OVERHEAD_S = 2.0  # actor start-up, checkpoints, reports
_PHASE_OVERHEAD_S = 5.0  # a Tune experiment's start-up and teardown
_FIXED_S = 18.0  # imports, data, Ray start-up, tables and report
_ASHA_EPOCH_SHARE = 0.36  # share of max_epochs an average ASHA search trial runs
_CONFIRM_EPOCH_SHARE = 0.55  # share of max_epochs a run with early stopping runs


def split_images(cfg: RunConfig, images: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """Train/val/test images: counted from a photo source's files, else the preset's per-class sizes x 2."""
    d = cfg.data
    return images if images is not None else (2 * d.n_train, 2 * d.n_val, 2 * d.n_test)


# EfficientNet-Lite0 (the transfer preset) in the same units: its baseline step of 32 images at 96 px
# took 278 ms on one thread of the reference machine, channels_last (issue 17's probe), i.e. work 6.9
# at 96 px, 3.05 at 64 px; its GAIN step took 2.6 baseline steps (723 ms): the masked stream
# backpropagates through the frozen stages to the mask.
_EFFICIENTNET_WORK_64 = 3.05
_GAIN_FACTOR_EFFICIENTNET = 2.6


def model_work(cfg: RunConfig) -> float:
    """One image's cost in units of the cpu preset's VGG16 (width 16, 64 px): the cost model's x."""
    scale = (cfg.data.image_size / 64) ** 2
    if cfg.model.arch == "efficientnet_lite0":
        return scale * _EFFICIENTNET_WORK_64
    return scale * 256 / cfg.model.width ** 2


def gain_factor(cfg: RunConfig) -> float:
    return _GAIN_FACTOR_EFFICIENTNET if cfg.model.arch == "efficientnet_lite0" else _GAIN_FACTOR


def epoch_seconds(cfg: RunConfig, arm: str, images: tuple[int, int, int] | None = None) -> float:
    n_train, n_val, _ = split_images(cfg, images)
    work = model_work(cfg)
    per_image = _SEC_PER_WORK * work + _SEC_PER_IMAGE
    train = n_train * per_image * (gain_factor(cfg) if arm == "gain" else 1.0)
    val = n_val * per_image / 3  # forward only
    return (train + val) / max(1, cfg.train.num_threads or 1) ** 0.7


def estimate(cfg: StudyConfig, cores: int | None = None) -> dict[str, Any]:
    import os

    b, images = cfg.base, cfg.data_images
    max_e = b.train.max_epochs
    search = sum(
        n * (_ASHA_EPOCH_SHARE * max_e * epoch_seconds(b, arm, images) + _TRIAL_OVERHEAD_S)
        for arm, n in cfg.search_split.items()
    )
    n_alphas = len(cfg.alphas)
    select = cfg.n_select() * sum(_CONFIRM_EPOCH_SHARE * max_e * epoch_seconds(b, arm, images) + _TRIAL_OVERHEAD_S
                                  for arm in ARMS)
    per_seed = (epoch_seconds(b, "baseline", images) + n_alphas * epoch_seconds(b, "gain", images)
                ) * _CONFIRM_EPOCH_SHARE * max_e
    # Test evaluation: a forward pass of every test image, Grad-CAM of the positives (~0.9 s measured).
    work = model_work(b)
    test_s = split_images(b, images)[2] * _SEC_PER_WORK * work * 0.8
    confirm = cfg.seeds * (per_seed + (1 + n_alphas) * (_TRIAL_OVERHEAD_S + test_s))
    cores = cores or os.cpu_count() or 1
    concurrency = max(1, int(cores // cfg.cpus_per_trial))
    if cfg.max_concurrent:
        concurrency = min(concurrency, cfg.max_concurrent)
    # The core-seconds above are for one thread per trial; wall time divides by parallel trials.
    phases = 2 + (1 if cfg.selection_seeds else 0)  # one search experiment for both arms
    wall = (search + select + confirm) / concurrency + phases * _PHASE_OVERHEAD_S + _FIXED_S
    # One trial's estimated seconds per phase: the live view compares finished trials with these
    # to correct the estimate of the later phases on a machine faster or slower than the reference.
    trial_s = {"search": search / max(1, sum(cfg.search_split.values()))}
    trial_s["select"] = select / max(1, cfg.n_select() * len(ARMS))
    trial_s["confirm"] = confirm / max(1, cfg.seeds * (1 + n_alphas))
    # What the live view counts as done (study.progress.Clock): each epoch's modelled seconds, and per
    # finished trial what it costs besides its epochs.
    epoch_s = {arm: epoch_seconds(b, arm, images) for arm in ARMS}
    extra_s = {"search": _TRIAL_OVERHEAD_S, "select": _TRIAL_OVERHEAD_S, "confirm": _TRIAL_OVERHEAD_S + test_s}
    return {"search_core_s": search, "select_core_s": select, "confirm_core_s": confirm, "wall_s": wall,
            "concurrency": concurrency, "trial_s": trial_s, "epoch_s": epoch_s, "trial_extra_s": extra_s}
