"""The study's options, declared once: `OPTIONS` makes the command line (`parser`), says which keys a
`--config` YAML file may set, and turns both into a `StudyConfig` (`resolve`), each value by its own
parser or, by default, by its StudyConfig field's type.

Precedence: StudyConfig's defaults < the --config file < the command line. A bad value raises
`UsageError` (a trainables ConfigError that names the option), which the launcher prints as one line
and exit status 2.
"""
from __future__ import annotations

import argparse
import codecs
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from analysis.sequential import BLOCK, FIRST_LOOK
from trainables import config
from trainables.config import PRESETS, ArgumentParser

from .plan import AUTO, TUNED, StudyConfig, UsageError, blame

_DEFAULTS = StudyConfig()
_FIELD_TYPES = typing.get_type_hints(StudyConfig)


# ---- text (command line, YAML) -> value ---------------------------------------------------------
def parse_typed(dest: str, raw: Any) -> Any:
    """A value typed by its StudyConfig field (int, float, bool, str, Optional ...)."""
    flag = "--" + dest.replace("_", "-")
    with blame(flag):
        return config.parse_typed(raw, _FIELD_TYPES[dest], flag)


def parse_seeds(raw: Any) -> int | str:
    """`--seeds 10` or `--seeds auto` (a staged confirmation; `resolve` checks its --max-seeds)."""
    if str(raw).strip().lower() == AUTO:
        return AUTO
    return parse_typed("seeds", raw)


def parse_alphas(text: str | list[Any]) -> tuple[float | str, ...]:
    """`--alphas tuned,1` -> ("tuned", 1.0); a YAML list works the same."""
    items = [str(x).strip() for x in (text if isinstance(text, list) else str(text).split(","))]
    out: list[float | str] = []
    for item in items:
        if item.lower() == TUNED:
            out.append(TUNED)
            continue
        try:
            out.append(float(item))
        except ValueError:
            raise UsageError("--alphas", f"{text!r}: use comma-separated positive numbers and/or 'tuned', "
                                         "e.g. --alphas tuned,1 or 0.5,1,2") from None
    return tuple(out)


def parse_margin(raw: Any) -> float:
    """`--margin 1` or `1pp` (percentage points); a percent sign is refused, since a percentage of an accuracy is
    ambiguous (1 % of 0.97 or 1 point?). Range and unit are checked by StudyConfig (analysis.sequential)."""
    text = str(raw).strip()
    if text.endswith("%"):
        number = text.rstrip("%").strip() or "1"
        raise UsageError("--margin", f"{text!r}: give percentage points of test accuracy as a plain number, "
                                     f"e.g. --margin {number} for ±{number} pp")
    return parse_typed("margin", text.removesuffix("pp").strip() if isinstance(raw, str) else raw)


def parse_data(spec: Any) -> tuple[tuple[str, Any], ...]:
    """`--data` (or YAML `data:`): trainables.config.parse_data, errors naming the flag."""
    with blame("--data"):
        return tuple(config.parse_data(spec).items())


def parse_set(items: Any) -> tuple[tuple[str, Any], ...]:
    """`--set` items or YAML `set:` (a mapping, or a list of KEY=VALUE; a bare string or number is refused)."""
    with blame("--set"):
        return tuple(config.parse_overrides(items).items())


def absolute_storage(storage: Any) -> str:
    storage = parse_typed("storage", storage)
    if "://" in storage:
        raise UsageError("--storage", f"{storage!r}: use a local or shared (mounted) folder; object-store URIs "
                                      "are not supported for the study's tables yet")
    return str(Path(storage).expanduser().resolve())


def absolute_sqlite(url: Any) -> str | None:
    # A relative sqlite path would name another file when the study resumes from another folder.
    url = parse_typed("optuna_storage", url)
    if url is None or not url.startswith("sqlite:///"):
        return url
    path, sep, query = url.removeprefix("sqlite:///").partition("?")
    if not path or path == ":memory:" or Path(path).is_absolute():
        return url
    return f"sqlite:///{Path(path).expanduser().resolve()}{sep}{query}"


# ---- the table ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One study option: its flag (`--` + dest with dashes), its help, how its value is parsed, and the
    StudyConfig field it sets. Every option is also a key of the --config file."""
    dest: str
    group: str
    help: str
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None  # None: typed by its StudyConfig field
    sets: str | None = None  # the StudyConfig field it sets (default: dest); `overrides` takes two
    argparse: dict[str, Any] = field(default_factory=dict)  # type, choices, action for the command line

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def target(self) -> str:
        return self.sets or self.dest

    def value(self, raw: Any) -> Any:
        return self.parse(raw) if self.parse is not None else parse_typed(self.dest, raw)


_d = _DEFAULTS
OPTIONS: tuple[Option, ...] = (
    Option("trials", "protocol", f"search trials, both arms together (default {_d.trials}): each arm gets N//2; "
           "an odd N leaves its last trial unused so that the budgets stay equal", "N", argparse={"type": int}),
    Option("seeds", "protocol", f"confirmation seeds, each shared by both arms (default {_d.seeds}); seeds 1000.. "
           f"are disjoint from the search's. 'auto' (needs --max-seeds): {FIRST_LOOK} seeds, then blocks "
           f"of {BLOCK} until the verdict is decided or --max-seeds is reached", "K|auto", parse=parse_seeds),
    Option("max_seeds", "protocol", "staged confirmation: after --seeds (or auto's first stage), add seeds in blocks "
           f"of {BLOCK} up to N, stopping as soon as the four-way verdict is decided (O'Brien-Fleming "
           "alpha spending keeps its error rates); default: one stage", "N", argparse={"type": int}),
    Option("margin", "protocol", f"equivalence margin in percentage points of test accuracy (default {_d.margin:g}: "
           "GAIN and baseline are 'equivalent' if the difference is shown to lie within ±1 pp); "
           "declared in study.json before the first trial", "PP", parse=parse_margin),
    Option("alphas", "protocol", "GAIN alphas to confirm, one Holm family: numbers and/or 'tuned' (the selected "
           "alpha); default tuned,1 (the paper's alpha next to the tuned one)", "A[,B...]", parse=parse_alphas),
    Option("select", "protocol", "what early stopping and selection score on validation data (default overall "
           "accuracy; worst-group for the shortcut scenario, e.g. --data bias=0.9); ties: validation log loss",
           argparse={"choices": ["overall", "worst-group"]}),
    Option("selection_k", "protocol", f"selection phase: each arm's top K search configurations (default "
           f"{_d.selection_k})", "K", argparse={"type": int}),
    Option("selection_seeds", "protocol", f"selection phase: re-run each candidate on S fresh seeds (default "
           f"{_d.selection_seeds}; 0 skips the phase)", "S", argparse={"type": int}),
    Option("preset", "protocol", f"run size (default {_d.preset}); smoke is for tests",
           argparse={"choices": list(PRESETS)}),
    Option("data", "protocol", "'mimicry' (default), a photo folder, and/or benchmark knobs: "
           "'camouflage=0.8,bias=0.9' or 'PATH,image_size=96' (the folder first, knobs after it; "
           "a folder name may hold commas). A public dataset as published, recognised or named: "
           "'cod10k:PATH,classes=Lizard+Chameleon+Gecko', 'camo:PATH,negatives=DIR', "
           "'nc4k:PATH,negatives=DIR'", "SPEC", parse=parse_data, sets="overrides"),
    Option("set", "protocol", "override any run config field, e.g. --set train.max_epochs=8 (repeatable)",
           "KEY=VALUE", parse=parse_set, sets="overrides", argparse={"action": "append"}),
    Option("seed", "protocol", f"study seed for the TPE samplers (default {_d.seed})", argparse={"type": int}),
    Option("grace_period", "protocol", "ASHA: epochs before the first cut (default: max_epochs // 4)", "EPOCHS",
           argparse={"type": int}),
    Option("reduction_factor", "protocol", f"ASHA: keep 1 in R trials at each rung (default {_d.reduction_factor})",
           "R", argparse={"type": int}),
    Option("name", "where results go", f"study name; the same name resumes (default {_d.name})"),
    Option("storage", "where results go", f"parent folder of runs/<name>/ (default ./{_d.storage}); a shared "
           "path on a cluster", "DIR", parse=absolute_storage),
    Option("optuna_storage", "where results go", "SQLAlchemy URL of the Optuna database (default "
           "sqlite:///<storage>/<name>/optuna.db)", "URL", parse=absolute_sqlite),
    Option("address", "Ray", "join a Ray cluster (default: start a local Ray)", "auto|HOST:PORT"),
    Option("cpus_per_trial", "Ray", f"CPUs per trial; torch threads follow (default {_d.cpus_per_trial:g})", "C",
           argparse={"type": float}),
    Option("gpus_per_trial", "Ray", "GPUs per trial, fractions allowed (default 0: CPU)", "G",
           argparse={"type": float}),
    Option("max_concurrent", "Ray", "at most M trials at once (default: what fits)", "M", argparse={"type": int}),
    Option("dashboard", "Ray", "local Ray: serve the dashboard on 127.0.0.1 (default on)",
           argparse={"action": argparse.BooleanOptionalAction}),
    Option("dashboard_port", "Ray", f"default {_d.dashboard_port}", "PORT", argparse={"type": int}),
)
del _d
FILE_KEYS = tuple(o.dest for o in OPTIONS)  # what a --config file may set


def parser(description: str) -> argparse.ArgumentParser:
    """The launcher's command line: OPTIONS by group, then the options of this command alone."""
    p = ArgumentParser(prog="python -m study.launch", description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    groups: dict[str, Any] = {}
    for o in OPTIONS:
        g = groups.get(o.group) or groups.setdefault(o.group, p.add_argument_group(o.group))
        g.add_argument(o.flag, dest=o.dest, metavar=o.metavar, help=o.help, **o.argparse)
    g = p.add_argument_group("this command")
    g.add_argument("--config", type=Path, metavar="study.yaml",
                   help="read options from a YAML file (keys as the long flags); the command line overrides it")
    g.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, then exit")
    v = g.add_mutually_exclusive_group()
    v.add_argument("-v", "--verbose", action="store_true", help="Ray Tune's own output and the trials' logs")
    v.add_argument("-q", "--quiet", action="store_true", help="no live view, only phase results")
    return p


def resolve(args: argparse.Namespace) -> StudyConfig:
    """Defaults < --config file < command line; every value parsed by its option."""
    merged: dict[str, Any] = read_config_file(args.config) if args.config else {}
    for o in OPTIONS:
        value = getattr(args, o.dest)
        if value is not None:
            merged[o.dest] = value
    merged.setdefault("storage", _DEFAULTS.storage)  # made absolute: a resumed study names the same folder
    kw: dict[str, Any] = {}
    for o in OPTIONS:
        if o.dest in merged:
            value = o.value(merged[o.dest])
            kw[o.target] = kw.get(o.target, ()) + value if o.target == "overrides" else value
    if kw.get("seeds") == AUTO:
        if kw.get("max_seeds") is None:
            raise UsageError("--seeds", f"auto needs a seed budget: add --max-seeds N (e.g. --seeds auto "
                                        f"--max-seeds 40; auto starts with {FIRST_LOOK} seeds and adds blocks of {BLOCK})")
        kw["seeds"] = FIRST_LOOK
    kw["verbosity"] = 2 if args.verbose else 0 if args.quiet else 1
    return StudyConfig(**kw)


# ---- the --config file --------------------------------------------------------------------------
# Byte-order marks, longest first (UTF-32's LE mark begins with UTF-16's): Windows Notepad saves
# "Unicode" as UTF-16 LE with a BOM, and "UTF-8" with one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def config_text(path: Path) -> str:
    """The file's text: UTF-8, or the encoding its byte-order mark names; anything else refused by name."""
    raw = path.read_bytes()
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in raw:
        raise UsageError("--config", f"{path}: holds NUL bytes (UTF-16 or UTF-32 without a byte-order mark?): "
                                     "save it as UTF-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise UsageError("--config", f"{path}: not {encoding.upper().removesuffix('-SIG')} text (byte "
                                     f"{raw[e.start]:#04x} at offset {e.start}): save it as UTF-8") from None


def read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    if not path.is_file():
        raise UsageError("--config", f"{path}: no such file")
    try:
        data = yaml.safe_load(config_text(path)) or {}
    except yaml.YAMLError as e:
        raise UsageError("--config", f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise UsageError("--config", f"{path}: expected a mapping of option: value")
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in FILE_KEYS:
            raise UsageError("--config", f"{path}: unknown option {key!r}; known are {', '.join(FILE_KEYS)}")
        out[dest] = value
    return out


def markdown_table() -> str:
    """The options as a Markdown table (README's "Options"): generated from OPTIONS, so it cannot drift."""
    lines = ["| option | YAML key | value | what it sets |", "|---|---|---|---|"]
    for o in OPTIONS:
        boolean = o.argparse.get("action") is argparse.BooleanOptionalAction
        value = o.metavar or ("/".join(o.argparse["choices"]) if "choices" in o.argparse else "true/false"
                              if boolean else {int: "N", float: "X"}.get(o.argparse.get("type"), "TEXT"))
        flag = f"--[no-]{o.flag[2:]}" if boolean else o.flag
        lines.append(f"| `{flag}` | `{o.dest}` | `{value.replace('|', '/')}` | {o.help.replace('|', '/')} |")
    return "\n".join(lines)
