"""An exported folder on disk: config.json + model.safetensors (+ a copy of this code). Used by every
twin's `from_pretrained` / `save_pretrained`. Imports only torch, safetensors and the stdlib."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
CODE_DIR = "diffariff_torch"  # the name this package has inside an exported folder


def read_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config dict, state dict) of an exported folder."""
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name} (not an exported diffariff folder)")
    return json.loads((folder / CONFIG_FILE).read_text()), load_file(str(folder / WEIGHTS_FILE))


def write_folder(folder: str | Path, config: dict, state: dict[str, torch.Tensor]) -> None:
    """Writes config.json, model.safetensors (float32) and, unless already there, this code's package."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()}, str(folder / WEIGHTS_FILE),
              metadata={"format": "pt"})
    code = Path(__file__).parent
    if code.resolve() != (folder / CODE_DIR).resolve():
        shutil.copytree(code, folder / CODE_DIR, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
