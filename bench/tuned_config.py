"""The committed tuned configurations (`tuned/<dataset>-<profile>.json`) and how a run uses them.

`python -m bench tune` writes one file per data set and profile: the data fingerprint, and per
model the chosen settings, every trial with its validation score, the trial count, the tuning
wall time, the command, the git commit and the date. `python -m bench run` fits each model with
its tuned settings when the file exists and was made on the same data (same fingerprint), and
records in every result which configuration it used (`config`: "tuned" or "default", with
`config_file`, `config_params`, or `config_why` for a default).
"""

from __future__ import annotations

import json
from pathlib import Path

from ccp.atomic import read_json

TUNED_ROOT = Path(__file__).resolve().parents[1] / "tuned"
FORMAT_VERSION = 1


def tuned_path(dataset: str, profile: str, root: Path | None = None) -> Path:
    return Path(root or TUNED_ROOT) / f"{dataset}-{profile}.json"


def read(path: Path) -> dict:
    """A tuned file, checked for the fields a run needs (one clear error otherwise)."""
    content = read_json(path)
    if content.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {content.get('format_version')!r}, this "
                         f"version reads {FORMAT_VERSION}")
    for field in ("dataset", "profile", "fingerprint", "models"):
        if field not in content:
            raise ValueError(f"{path}: field {field!r} is missing")
    for key, entry in content["models"].items():
        for field in ("params", "settings", "trials", "wall_s"):
            if field not in entry:
                raise ValueError(f"{path}: models[{key!r}] lacks field {field!r}")
    return content


def write(path: Path, content: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)  # a reader never sees half a file


def default(why: str) -> dict:
    return {"config": "default", "config_file": None, "config_params": None,
            "config_why": why}


def configs_for_run(dataset: str, fingerprint: str, profile: str, keys: list[str],
                    use_tuned: bool = True, engine: str = "local",
                    root: Path | None = None) -> dict[str, dict]:
    """Per model key, what run_one fits with and records: the tuned settings of the data
    set's file, or the defaults with the reason."""
    path = tuned_path(dataset, profile, root)
    if not use_tuned:
        return {key: default("--no-tuned") for key in keys}
    if engine != "local":
        return {key: default(f"engine {engine}: tuned settings are applied to local fits "
                             "only") for key in keys}
    if not path.exists():
        return {key: default(f"no tuned file {path.name}") for key in keys}
    content = read(path)
    if content["fingerprint"] != fingerprint:
        why = (f"{path.name} was tuned on data with fingerprint {content['fingerprint']}, "
               f"this data's is {fingerprint}")
        return {key: default(why) for key in keys}
    configs = {}
    for key in keys:
        entry = content["models"].get(key)
        if entry is None:
            configs[key] = default(f"{path.name} has no entry for {key}")
            continue
        configs[key] = {"config": "tuned", "config_file": _shown(path),
                        "config_params": entry["params"], "config_why": None,
                        "tuning_trials": entry["trials"], "tuning_wall_s": entry["wall_s"],
                        "settings": entry["settings"]}
    return configs


def _shown(path: Path) -> str:
    """The file as the records name it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(TUNED_ROOT.parent))
    except ValueError:
        return str(path)
