"""Music2Latent (Pasini et al., ISMIR 2024) PyTorch checkpoint -> our CAE params and config.

The public checkpoint (`music2latent.pt`, the file the `music2latent` package downloads) holds
`gen_state_dict`: one torch module with `encoder.*` (spectrogram -> latents), `decoder.*` (the latent
up-sampling path) and the consistency UNet at the top level. Its architecture is our `m2l` variant; this
file maps each torch layer onto its Flax twin by walking the architecture level by level:
  Conv2d weight [out, in, kh, kw]  -> Conv kernel [kh, kw, in, out]
  Conv1d weight [out, in, k]       -> Conv kernel [k, in, out]   (k = 1: Dense kernel [in, out])
  Linear weight [out, in]          -> Dense kernel [in, out]
  MultiheadAttention in_proj [3C, C] (q, k, v stacked) -> qkv Dense [C, 3C]; out_proj -> out Dense
  GroupNorm weight / bias          -> scale / bias
The 2-D -> 1-D flattening orders (encoder: channel-major; up-path: frequency-major) are the same on both
sides (see models/cae.py), so 1x1 convolutions there map directly. The up-path's 1-D blocks carry a
noise-embedding projection that Music2Latent never calls; it is the only part left out.
Music2Latent works at 44.1 kHz, so the converted config says data.sample_rate = 44100.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.cae import get_config
from diffariff_jax.models.cae import CAE, CAEShape

MUSIC2LATENT_SAMPLE_RATE = 44100
UNUSED_PREFIXES = ("decoder.bottleneck_layers.",)  # only their never-called proj_emb is dropped


class ConversionError(ValueError):
    """A checkpoint that is not a Music2Latent generator state dict of the expected shape."""


def music2latent_config() -> ml_collections.ConfigDict:
    """Our config for a converted Music2Latent model (the m2l variant at 44.1 kHz)."""
    config = get_config("m2l")
    config.data.sample_rate = MUSIC2LATENT_SAMPLE_RATE
    config.source = "music2latent"
    return config


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads `gen_state_dict` from a Music2Latent .pt file as float32 numpy arrays."""
    import torch  # torch stays inside export/

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a bad file; the user needs the path.
        raise ConversionError(f"{path}: cannot be read as a PyTorch checkpoint ({e})") from None
    if not isinstance(ckpt, dict) or "gen_state_dict" not in ckpt:
        raise ConversionError(f"{path}: not a Music2Latent checkpoint (no 'gen_state_dict' entry)")
    return {k: v.detach().float().cpu().numpy() for k, v in ckpt["gen_state_dict"].items()}


class _Reader:
    """Takes tensors out of the state dict by name, remembering which ones were used."""

    def __init__(self, sd: dict[str, np.ndarray]):
        self.sd, self.used = sd, set()

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.sd:
            raise ConversionError(f"Music2Latent checkpoint lacks {name!r}: not the expected architecture")
        self.used.add(name)
        return self.sd[name]

    def has(self, name: str) -> bool:
        return name in self.sd

    def conv2d(self, p: str) -> dict:
        return {"kernel": self(p + ".weight").transpose(2, 3, 1, 0), "bias": self(p + ".bias")}

    def conv1d(self, p: str) -> dict:
        return {"kernel": self(p + ".weight").transpose(2, 1, 0), "bias": self(p + ".bias")}

    def dense_from_conv1x1(self, p: str) -> dict:
        return {"kernel": self(p + ".weight")[:, :, 0].T, "bias": self(p + ".bias")}

    def linear(self, p: str) -> dict:
        return {"kernel": self(p + ".weight").T, "bias": self(p + ".bias")}

    def norm(self, p: str) -> dict:
        return {"gn": {"scale": self(p + ".weight"), "bias": self(p + ".bias")}}

    def resblock(self, p: str, dims: int, cond: bool) -> dict:
        conv = self.conv2d if dims == 2 else self.conv1d
        out = {"norm1": self.norm(p + ".norm1"), "conv1": conv(p + ".conv1"),
               "norm2": self.norm(p + ".norm2"), "conv2": conv(p + ".conv2")}
        if self.has(p + ".res_conv.weight"):
            out["res_conv"] = conv(p + ".res_conv")
        if cond:
            out["proj_emb"] = self.linear(p + ".proj_emb")
        if self.has(p + ".att.mha.in_proj_weight"):
            out["att"] = {"norm": self.norm(p + ".att.norm"),
                          "qkv": {"kernel": self(p + ".att.mha.in_proj_weight").T,
                                  "bias": self(p + ".att.mha.in_proj_bias")},
                          "out": self.linear(p + ".att.mha.out_proj")}
        return out


def _encoder(r: _Reader, s: CAEShape) -> dict:
    out = {"conv_inp": r.conv2d("encoder.conv_inp"),
           "freq_gain": r("encoder.gain.scale").reshape(s.freq_bins, 1, 1)}
    k = 0  # torch keeps the level blocks and the resamplers in one flat list
    for level in range(s.levels):
        for b in range(s.encoder_blocks):
            out[f"down_{level}_{b}"] = r.resblock(f"encoder.down_layers.{k}", 2, cond=False)
            k += 1
        if level < s.levels - 1:
            out[f"downsample_{level}"] = {"norm": r.norm(f"encoder.down_layers.{k}.norm"),
                                          "conv": r.conv2d(f"encoder.down_layers.{k}.c")}
            k += 1
    out["prenorm_2d_to_1d"] = r.norm("encoder.prenorm_1d_to_2d")
    out["conv_to_1d"] = r.dense_from_conv1x1("encoder.bottleneck_layers.0")
    for i in range(s.bottleneck_blocks):
        out[f"bottleneck_{i}"] = r.resblock(f"encoder.bottleneck_layers.{i + 1}", 1, cond=False)
    out["norm_out"] = r.norm("encoder.norm_out")
    out["conv_out"] = r.dense_from_conv1x1("encoder.conv_out")
    return out


def _up_path(r: _Reader, s: CAEShape) -> dict:
    out = {"conv_inp": r.dense_from_conv1x1("decoder.conv_inp")}
    for i in range(s.bottleneck_blocks):
        out[f"bottleneck_{i}"] = r.resblock(f"decoder.bottleneck_layers.{i}", 1, cond=False)
    out["conv_to_2d"] = r.dense_from_conv1x1("decoder.conv_out_bottleneck")
    k = 0
    for level in reversed(range(s.levels)):
        for b in range(s.encoder_blocks):
            out[f"up_{level}_{b}"] = r.resblock(f"decoder.up_layers.{k}", 2, cond=False)
            k += 1
        if level > 0:
            out[f"upsample_{level}"] = {"conv": r.conv2d(f"decoder.up_layers.{k}.c")}
            k += 1
    return out


def _unet(r: _Reader, s: CAEShape) -> dict:
    out = {"emb_proj": {"dense_0": r.linear("emb_proj.0"), "dense_1": r.linear("emb_proj.2")},
           "conv_inp": r.conv2d("conv_inp")}
    for where in ("inp", "out"):
        out[f"scale_{where}"] = {f"dense_{i}": r.linear(f"scale_{where}.{2 * i}") for i in range(3)}
    k = 0
    for level in range(s.levels):
        for b in range(s.decoder_blocks):
            out[f"down_latent_{level}_{b}"] = r.conv2d(f"down_layers.{k}")
            out[f"down_{level}_{b}"] = r.resblock(f"down_layers.{k + 1}", 2, cond=True)
            k += 2
        if level < s.levels - 1:
            out[f"downsample_{level}"] = {"conv": r.conv2d(f"down_layers.{k}.c")}
            k += 1
    k = 0
    for level in reversed(range(s.levels)):
        for b in range(s.decoder_blocks):
            out[f"up_latent_{level}_{b}"] = r.conv2d(f"up_layers.{k}")
            out[f"up_{level}_{b}"] = r.resblock(f"up_layers.{k + 1}", 2, cond=True)
            k += 2
        if level > 0:
            out[f"upsample_{level}"] = {"conv": r.conv2d(f"up_layers.{k}.c")}
            k += 1
    out["conv_decoded"] = r.conv2d("conv_decoded")
    out["norm_out"] = r.norm("norm_out")
    out["conv_out"] = r.conv2d("conv_out")
    return out


def convert_state_dict(sd: dict[str, np.ndarray], shape: CAEShape | None = None) -> dict[str, Any]:
    """Music2Latent `gen_state_dict` (numpy) -> Flax params {"params": {...}} for CAE(shape).

    Raises ConversionError on a missing, unexpected or wrongly shaped tensor.
    """
    shape = shape or CAEShape.from_config(music2latent_config().model)
    r = _Reader(sd)
    params = {"params": {"encoder": _encoder(r, shape), "up_path": _up_path(r, shape), "unet": _unet(r, shape)}}
    left = [k for k in sd if k not in r.used and not (k.startswith(UNUSED_PREFIXES) and ".proj_emb." in k)]
    if left:
        raise ConversionError(f"Music2Latent checkpoint has {len(left)} tensors this architecture lacks, e.g. {left[0]!r}")
    expected = _expected_shapes(shape)
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    if len(got) != len(jax.tree.leaves(expected)):
        raise ConversionError(f"converted {len(got)} tensors, the model has {len(jax.tree.leaves(expected))}")
    for path, value in got:
        want = _lookup(expected, path)
        if tuple(value.shape) != tuple(want.shape):
            raise ConversionError(f"{jax.tree_util.keystr(path)}: checkpoint shape {value.shape}, model wants {want.shape}")
    return jax.tree.map(lambda v: np.ascontiguousarray(v, np.float32), params)


def _expected_shapes(shape: CAEShape) -> Any:
    bins = shape.freq_bins
    spec = jnp.zeros((1, bins, 2 * shape.time_reduction, shape.data_channels))
    return jax.eval_shape(lambda key: CAE(shape).init(key, spec, jnp.ones((1,))), jax.random.PRNGKey(0))


def _lookup(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key.key]
    return tree


def convert_checkpoint(path: str | Path) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
    """Music2Latent .pt file -> (our config, Flax params)."""
    config = music2latent_config()
    return config, convert_state_dict(load_state_dict(path), CAEShape.from_config(config.model))


def check_music2latent_shape(config: ml_collections.ConfigDict, source: Any) -> None:
    """Raises ConversionError unless `config` is a CAE of Music2Latent's architecture (configs/cae.py:m2l)."""
    if config.get("kind") != "cae":
        raise ConversionError(f"{source} holds a {config.get('kind')!r} model; --to music2latent needs a CAE "
                              "of the m2l shape (configs/cae.py:m2l)")
    want, got = CAEShape.from_config(music2latent_config().model), CAEShape.from_config(config.model)
    differ = [f"{f}={getattr(got, f)!r} (m2l: {getattr(want, f)!r})" for f in want.__dataclass_fields__
              if getattr(got, f) != getattr(want, f)]
    if differ:
        raise ConversionError(f"{source} is not an m2l-shaped CAE, which --to music2latent needs "
                              f"(configs/cae.py:m2l): {', '.join(differ)}")
    scale = float(config.inference.latent_scale)
    if scale != 0.06:
        raise ConversionError(f"{source}: inference.latent_scale={scale}; Music2Latent divides its latents by 0.06")


def to_state_dict(params: Any, template: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Our CAE params {"params": ...} -> a Music2Latent `gen_state_dict` with the names and shapes of
    `template` (name -> shape, e.g. from music2latent.models.UNet().state_dict()).

    The inverse of convert_state_dict without a second name table: converting a state dict whose every
    element holds its own (tensor number, position) tells where each of our params came from. Tensors
    the import leaves out (the never-called proj_emb layers) are written as zeros.
    """
    names = sorted(template)
    number = {n: np.full(template[n], i, np.float32) for i, n in enumerate(names)}
    position = {n: np.arange(int(np.prod(template[n])), dtype=np.float32).reshape(template[n]) for n in names}
    if max(len(names), *(int(np.prod(s)) for s in template.values())) >= 2**24:
        raise ConversionError("a tensor is too large for exact float32 position tracking")
    where_tensor = convert_state_dict(number)
    where_pos = jax.tree.leaves(convert_state_dict(position))
    if jax.tree.structure(where_tensor) != jax.tree.structure(params):
        raise ConversionError("these params do not have the m2l CAE's structure")
    out = {n: np.zeros(int(np.prod(template[n])), np.float32) for n in names}
    for value, tensor, pos in zip(jax.tree.leaves(params), jax.tree.leaves(where_tensor), where_pos):
        out[names[int(tensor.flat[0])]][pos.astype(np.int64).ravel()] = np.asarray(value, np.float32).ravel()
    return {n: out[n].reshape(template[n]) for n in names}


def save_music2latent(params: Any, path: Path) -> int:
    """Writes `{"gen_state_dict": ...}` to `path` (what EncoderDecoder(load_path_inference=path) loads).
    Needs the music2latent package for its architecture's names and shapes. Returns the tensor count."""
    import torch

    try:
        from music2latent.models import UNet
    except ImportError:
        raise ConversionError("--to music2latent needs the music2latent package "
                              "(pip install music2latent==0.1.8)") from None
    template = {k: tuple(v.shape) for k, v in UNet().state_dict().items()}
    sd = to_state_dict(params, template)
    torch.save({"gen_state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}}, str(path))
    return len(sd)
