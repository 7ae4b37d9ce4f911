"""Exported PyTorch folders: our checkpoint -> a folder a PyTorch user loads alone, and the way back.

An exported folder holds
    model.safetensors   the params in PyTorch layout and names (export/names.py)
    config.json         the run's resolved config, plus an "export" section (source, params, companions)
    diffariff_torch/    the PyTorch modelling code (a copy of export/torch_port/: torch, safetensors, numpy)
    README.md           the three lines that load it and sample
`from_torch_folder` reads such a folder (possibly with fine-tuned weights saved by `save_pretrained`) back
into params of the same shape; the conversion is a set of exact transposes, so a round trip is bit-exact.
What differs by model kind (which twin, which template, which README) sits in one `KINDS` entry each.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections

from diffariff_jax.export import names
from diffariff_jax.training.checkpoint import CheckpointError, config_from_dict, config_to_dict

TORCH_PORT = Path(__file__).parent / "torch_port"
CODE_DIR = "diffariff_torch"
WEIGHTS_FILE, CONFIG_FILE, README_FILE = "model.safetensors", "config.json", "README.md"
FORMAT = "diffariff-torch/1"


def _ldm_template(config: ml_collections.ConfigDict) -> Any:
    from diffariff_jax.diffusion.edm import Denoiser

    denoiser = Denoiser.from_config(config)
    frames = int(config.data.crop_frames)
    return jax.eval_shape(lambda key: denoiser.init(key, frames), jax.random.key(0))


LDM_README = """\
# {name}: Diff-A-Riff latent diffusion model (PyTorch)

Exported from diffariff-jax (`{source}`, {params} params, {count:,} parameters). Needs only `torch`,
`safetensors` and `numpy`; the modelling code is in `{code}/`.

```python
import sys; sys.path.insert(0, "{folder}")                         # the folder that holds {code}/
from {code} import LatentDiffusion
latents = LatentDiffusion.from_pretrained("{folder}").sample(num_frames=117, batch_size=1)  # [1, 117, {latent_dim}]
```

- Conditioned samples: `sample(num_frames=..., context=[b, frames, {latent_dim}], clap=[b, {clap_dim}], cfg_context=, cfg_clap=,
  steps=, solver="heun"|"euler", churn=, inpaint_latents=, inpaint_mask=, init_latents=,
  variation_strength=, loop_repeats=, loop_strength=, stereo_width=, noise=)`; defaults come from
  `config.json`'s `sampler` section (steps {steps}, solver {solver}, CFG {cfg_context}/{cfg_clap}).
- Latents are [batch, frames, {latent_dim}] at {frame_rate:.2f} frames/s; decode them with the autoencoder
  the model was trained on: {cae}. CLAP embeddings ({clap_dim}-d, L2-normalised) come from {clap}.
- `model.save_pretrained(DIR)` writes a fine-tuned copy;
  `python -m diffariff_jax.export --from torch --checkpoint DIR --out RELEASE` turns it back into a JAX release.
"""


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one model kind is exported: its params template and the README that says how to use it."""

    template: Callable[[ml_collections.ConfigDict], Any]
    readme: Callable[[ml_collections.ConfigDict, dict], str]


def _ldm_readme(config: ml_collections.ConfigDict, info: dict) -> str:
    s = config.sampler
    companions = info["companions"]
    return LDM_README.format(
        name=info["name"], source=info["source"], params=info["params"], count=info["parameters"], code=CODE_DIR,
        folder=info["folder"], latent_dim=config.model.latent_dim, clap_dim=config.model.clap_dim,
        steps=s.steps, solver=s.solver, cfg_context=s.cfg_context, cfg_clap=s.cfg_clap,
        frame_rate=companions.get("sample_rate", 48000) / 4096,
        cae=f"`{companions['cae']}`" if companions.get("cae") else "(not recorded)",
        clap=f"`{companions['clap']}` (transformers)" if companions.get("clap") else "(not recorded)")


KINDS = {"ldm": Kind(_ldm_template, _ldm_readme)}


def kind_of(config: ml_collections.ConfigDict, path: Any) -> Kind:
    kind = config.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path} holds a {kind!r} model; --to torch exports {', '.join(sorted(KINDS))}")
    return KINDS[kind]


def companions(config: ml_collections.ConfigDict) -> dict:
    """The CAE and CLAP an LDM was trained with, as its latent records name them (when readable)."""
    records = config.get("data", {}).get("records_dir", "")
    try:
        info = json.loads((Path(records) / "latents.json").read_text()) if records else {}
    except (OSError, ValueError):
        info = {}
    return {k: info[k] for k in ("cae", "clap", "sample_rate") if k in info}


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuses an existing non-empty --out unless overwrite (then it is emptied first)."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"--out {out} exists and is not empty; choose another folder or pass --overwrite")
        shutil.rmtree(out)


def to_torch_folder(config: ml_collections.ConfigDict, params: Any, out: Path, *, source: str,
                    which: str) -> dict:
    """Writes the exported folder for `params` (a Flax params tree of config's model). Returns its info."""
    kind = kind_of(config, source)
    tensors = names.flax_to_torch(params)
    count = sum(int(v.size) for v in tensors.values())
    info = {"format": FORMAT, "name": out.name, "source": source, "params": which, "parameters": count,
            "companions": companions(config), "folder": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    names.save_safetensors(out / WEIGHTS_FILE, tensors, {"format": "pt", "source": source, "params": which})
    data = config_to_dict(config)
    data["export"] = {k: info[k] for k in ("format", "source", "params", "companions")}
    (out / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True))
    shutil.copytree(TORCH_PORT, out / CODE_DIR, ignore=shutil.ignore_patterns("__pycache__"))
    (out / README_FILE).write_text(kind.readme(config, info))
    return info


def from_torch_folder(folder: Path) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, Flax params) from an exported (or `save_pretrained`) folder. Raises NameTableError naming
    missing, extra or misshapen tensors, CheckpointError for a folder that is not an export."""
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{folder} is not an exported PyTorch folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        data = json.loads((folder / CONFIG_FILE).read_text())
    except ValueError as e:
        raise CheckpointError(f"{folder / CONFIG_FILE}: not valid JSON ({e})") from None
    data.pop("export", None)
    config = config_from_dict(data)
    template = kind_of(config, folder).template(config)
    params = names.torch_to_flax(names.load_safetensors(folder / WEIGHTS_FILE), template)
    return config, params
