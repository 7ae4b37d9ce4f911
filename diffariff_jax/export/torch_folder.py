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
from diffariff_jax.export.torch_port.folder import CODE_DIR, CONFIG_FILE, WEIGHTS_FILE
from diffariff_jax.training.checkpoint import CheckpointError, config_from_dict, config_to_dict

TORCH_PORT = Path(__file__).parent / "torch_port"
README_FILE = "README.md"
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
import sys; sys.path.insert(0, "{folder}")   # run beside this folder, or give its full path
from {code} import LatentDiffusion
latents = LatentDiffusion.from_pretrained("{folder}").sample(num_frames=117, batch_size=1)  # [1, 117, {latent_dim}]
```

- Conditioned samples: `sample(num_frames=..., context=[b, frames, {latent_dim}], clap=[b, {clap_dim}],
  cfg_context=, cfg_clap=, steps=, solver="heun"|"euler", churn=, inpaint_latents=, inpaint_mask=, init_latents=,
  variation_strength=, loop_repeats=, loop_strength=, stereo_width=, noise=)`; defaults come from
  `config.json`'s `sampler` section (steps {steps}, solver {solver}, CFG {cfg_context}/{cfg_clap}).
- Latents are [batch, frames, {latent_dim}] at {frame_rate:.2f} frames/s; decode them with the autoencoder
  the model was trained on: {cae}. CLAP embeddings ({clap_dim}-d, L2-normalised, from a transformers
  ClapModel) come from {clap}.
- `model.save_pretrained(DIR)` writes a fine-tuned copy;
  `python -m diffariff_jax.export --from torch --checkpoint DIR --out RELEASE` turns it back into a JAX release.
"""


CAE_README = """\
# {name}: Diff-A-Riff consistency autoencoder (PyTorch)

Exported from diffariff-jax (`{source}`, {params} params, {count:,} parameters). Needs only `torch`,
`safetensors` and `numpy`; the modelling code is in `{code}/`.

```python
import sys, torch; sys.path.insert(0, "{folder}")   # run beside this folder, or give its full path
from {code} import ConsistencyAutoencoder
wav = ConsistencyAutoencoder.from_pretrained("{folder}").decode(torch.randn(1, 12, {latent_dim}), steps=1)
```

- `encode(wav [batch, samples] at {sample_rate} Hz) -> [batch, ceil(samples / {hop}), {latent_dim}]` latents
  (tanh output / {latent_scale}); `decode(latents, steps=1..k, num_samples=, noise=) -> [batch, samples]`.
  Two decodings differ slightly: each starts from fresh noise (pass `noise` to fix it).
- The compressed complex STFT and its inverse are `{code}.stft.Stft`.
- `model.save_pretrained(DIR)` writes a fine-tuned copy;
  `python -m diffariff_jax.export --from torch --checkpoint DIR --out RELEASE` turns it back into a JAX release.
"""


def _cae_template(config: ml_collections.ConfigDict) -> Any:
    from diffariff_jax.training.cae_task import CAETask

    return jax.eval_shape(CAETask(config).init_params, jax.random.key(0))["params"]


def _cae_readme(config: ml_collections.ConfigDict, info: dict) -> str:
    return CAE_README.format(
        name=info["name"], source=info["source"], params=info["params"], count=info["parameters"], code=CODE_DIR,
        folder=info["folder"], latent_dim=config.model.latent_dim, sample_rate=config.data.sample_rate,
        hop=config.stft.hop * 2 ** sum(1 for f in config.model.freq_downsample if not f),
        latent_scale=config.inference.latent_scale)


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one model kind is exported: its params template, the README that says how to use it, and
    the top-level wrapper its params carry (the CAE's are {"params": ...}, the LDM's are not)."""

    template: Callable[[ml_collections.ConfigDict], Any]
    readme: Callable[[ml_collections.ConfigDict, dict], str]
    wrapper: str | None = None

    def unwrap(self, params: Any) -> Any:
        return params if self.wrapper is None else params[self.wrapper]

    def wrap(self, tree: Any) -> Any:
        return tree if self.wrapper is None else {self.wrapper: tree}


def _ldm_readme(config: ml_collections.ConfigDict, info: dict) -> str:
    s = config.sampler
    companions = info["companions"]
    return LDM_README.format(
        name=info["name"], source=info["source"], params=info["params"], count=info["parameters"], code=CODE_DIR,
        folder=info["folder"], latent_dim=config.model.latent_dim, clap_dim=config.model.clap_dim,
        steps=s.steps, solver=s.solver, cfg_context=s.cfg_context, cfg_clap=s.cfg_clap,
        frame_rate=companions.get("sample_rate", 48000) / 4096,
        cae=f"`{companions['cae']}`" if companions.get("cae") else "(not recorded)",
        clap=f"`{companions['clap']}`" if companions.get("clap") else "(not recorded)")


KINDS = {"ldm": Kind(_ldm_template, _ldm_readme), "cae": Kind(_cae_template, _cae_readme, wrapper="params")}


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


def export_bundle(root: Any, out: Path) -> dict:
    """A release bundle's companions (release_bundle: cae/, clap/, accompanist.json) into the export: the
    CAE as a PyTorch CAE folder in cae/, the CLAP (a transformers dir) and accompanist.json copied.
    Returns the companions it carried, {} for a plain release dir or a workdir."""
    from diffariff_jax import release_bundle
    from diffariff_jax.training.checkpoint import load_for_inference

    carried = {}
    if root is not None and (root / release_bundle.CAE_DIR / CONFIG_FILE).exists():
        cae_config, cae_params = load_for_inference(root / release_bundle.CAE_DIR, kind="cae")
        to_torch_folder(cae_config, cae_params, out / release_bundle.CAE_DIR,
                        source=str(root / release_bundle.CAE_DIR), which="ema")
        carried["cae"] = f"{release_bundle.CAE_DIR}/ in this folder (diffariff_torch.ConsistencyAutoencoder)"
    for name, label in ((release_bundle.CLAP_DIR, "clap"), (release_bundle.BUNDLE_FILE, None)):
        if root is not None and (root / name).exists():
            _copy(root / name, out / name)
            if label:
                carried[label] = f"{name}/ in this folder (transformers ClapModel.from_pretrained)"
    return carried


def import_bundle(folder: Path, out: Any) -> None:
    """The way back for export_bundle: cae/ to a CAE release dir, clap/ and accompanist.json copied, so
    the release is the bundle `Accompanist.load` reads."""
    from diffariff_jax import release_bundle
    from diffariff_jax.training.checkpoint import save_release

    if (folder / release_bundle.CAE_DIR / WEIGHTS_FILE).exists():
        cae_config, cae_params = from_torch_folder(folder / release_bundle.CAE_DIR)
        save_release(out / release_bundle.CAE_DIR, cae_config, cae_params)
    for name in (release_bundle.CLAP_DIR, release_bundle.BUNDLE_FILE):
        if (folder / name).exists():
            _copy(folder / name, out / name)


def _copy(source: Any, dest: Any) -> None:
    """Copies a file or a folder tree (local paths or epath URIs)."""
    from etils import epath

    source, dest = epath.Path(source), epath.Path(dest)
    if source.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            _copy(item, dest / item.name)
    else:
        source.copy(dest, overwrite=True)


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuses an existing non-empty --out unless overwrite (then it is emptied first)."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CheckpointError(f"--out {out} exists and is not empty; choose another folder or pass --overwrite")
        shutil.rmtree(out)


def to_torch_folder(config: ml_collections.ConfigDict, params: Any, out: Path, *, source: str,
                    which: str, bundle_root: Any = None) -> dict:
    """Writes the exported folder for `params` (a Flax params tree of config's model), with the companions
    of a release bundle at `bundle_root` when there are any. Returns its info."""
    kind = kind_of(config, source)
    tensors = names.flax_to_torch(kind.unwrap(params))
    count = sum(int(v.size) for v in tensors.values())
    out.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, "name": out.name, "source": source, "params": which, "parameters": count,
            "companions": {**companions(config), **export_bundle(bundle_root, out)}, "folder": out.name}
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
    kind = kind_of(config, folder)
    params = names.torch_to_flax(names.load_safetensors(folder / WEIGHTS_FILE), kind.template(config))
    return config, kind.wrap(params)
