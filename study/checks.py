"""Everything that can fail on bad input fails here, before Ray or any trial starts: each check raises a
UsageError naming the option to fix (the launcher's one line and exit status 2)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from trainables.config import check_writable

from .plan import StudyConfig, UsageError, blame


def check_data(cfg: StudyConfig) -> tuple[StudyConfig, str | None]:
    """A photo source's layout recognised and its files listed, no pixels read: its problems exit 2 here,
    and the cost model gets its image counts. Returns the plan and what was recognised (None: the benchmark)."""
    if cfg.base.data.is_procedural:
        return cfg, None
    from trainables.data import SPLIT_NAMES, DataError, survey

    try:
        found = survey(cfg.base.data)
    except DataError as e:
        raise UsageError("--data", str(e)) from None
    images = tuple(sum(found["counts"][s].values()) for s in SPLIT_NAMES)
    return dataclasses.replace(cfg, data_images=images), found["summary"]


def check_storage(cfg: StudyConfig) -> None:
    """The run folder (and a sqlite Optuna file elsewhere) must be writable before study.json is written."""
    with blame("--storage"):
        check_writable(Path(cfg.run_dir), folder=True)
    if (cfg.optuna_storage or "").startswith("sqlite:////"):  # the default lives in the run folder
        db = Path(cfg.optuna_url.removeprefix("sqlite:///").partition("?")[0])
        if not db.parent.is_dir():
            raise UsageError("--optuna-storage", f"{cfg.optuna_url!r}: the folder {db.parent} does not exist; "
                                                 "create it or choose another path")
        with blame("--optuna-storage"):
            check_writable(db, folder=False)


def check_before_compute(cfg: StudyConfig) -> Any:
    """Every check of the plan against the world (tables, folders, cluster, port, data); returns the
    study's splits (trainables.data.Splits), loaded and fingerprinted."""
    from trainables.data import DataError, load_splits

    from .records import preflight
    from .session import check_address, check_dashboard_port

    try:
        preflight(cfg)
    except (TypeError, ValueError, OverflowError) as e:  # pyarrow's errors are ValueError/TypeError
        raise UsageError("--set/--data", f"a value the study would record cannot be written to its "
                                         f"tables ({str(e).splitlines()[0]}): change it") from None
    check_storage(cfg)
    check_address(cfg.address)
    check_dashboard_port(cfg)
    check_weights(cfg)
    try:
        return load_splits(cfg.base.data)
    except DataError as e:
        raise UsageError("--data", str(e)) from None


def check_weights(cfg: StudyConfig) -> None:
    """The model family's packages and weights file (the transfer preset's timm and ImageNet weights).
    VGG16 has nothing to check before its runs, and the launcher then never imports torch."""
    if cfg.base.model.arch == "vgg16":
        return
    from trainables.model import MissingPackageError, WeightsError, check_model

    try:
        check_model(cfg.base.model)
    except MissingPackageError as e:
        raise UsageError("--preset/--set model.arch", str(e)) from None
    except WeightsError as e:
        raise UsageError("--set model.weights", str(e)) from None
