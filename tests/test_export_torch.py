"""`python -m diffariff_jax.export --to torch` and `--from torch`: the exported folder works alone (a
subprocess that never imports jax or tensorflow runs its README and samples like JAX does), the way back
is bit-exact and carries PyTorch fine-tuning, raw vs EMA params, and one-line errors (exit 1)."""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from diffariff_jax.diffusion import samplers
from diffariff_jax.export import names
from diffariff_jax.export.__main__ import main as export_main
from diffariff_jax.training import checkpoint
from export_fixture import tiny_ldm

T = 12


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    config, denoiser, params = tiny_ldm(seed=1)
    path = tmp_path_factory.mktemp("ldm") / "release"
    checkpoint.save_release(path, config, params)
    return path, config, denoiser, params


@pytest.fixture(scope="module")
def exported(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "exported"
    assert export_main(["--checkpoint", str(release[0]), "--to", "torch", "--out", str(out)]) == 0
    return out


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for needle in needles:
        assert needle in err, err
    return err


def test_exported_folder_layout(exported, release):
    listing = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert {"model.safetensors", "config.json", "README.md", "diffariff_torch/__init__.py",
            "diffariff_torch/unet1d.py", "diffariff_torch/sampling.py"} <= set(listing)
    config = json.loads((exported / "config.json").read_text())
    assert config["kind"] == "ldm" and config["export"]["params"] == "ema"
    tensors = names.load_safetensors(exported / "model.safetensors")
    # PyTorch layout: Conv1d weight [out, in, k], Linear weight [out, in].
    assert tensors["enc_in.weight"].shape == (32, 128, 3) and tensors["map_clap0.weight"].shape == (32, 32)
    ema = release[3]
    kernel = np.asarray(ema["enc_in"]["Conv_0"]["kernel"])  # Flax [k, in, out]
    np.testing.assert_array_equal(tensors["enc_in.weight"], kernel.transpose(2, 1, 0))


def test_twin_code_imports_only_torch_safetensors_numpy():
    allowed = {"torch", "safetensors", "numpy", "json", "math", "shutil", "pathlib", "typing", "__future__"}
    from diffariff_jax.export import torch_folder
    for path in torch_folder.TORCH_PORT.glob("*.py"):
        for module in re.findall(r"^(?:from|import) ([\w.]+)", path.read_text(), re.M):
            assert module.startswith(".") or module.split(".")[0] in allowed, (path.name, module)


def test_folder_alone_runs_readme_and_samples_like_jax(exported, release, tmp_path):
    """A subprocess beside the folder, outside the repo, runs the README's code, then a guided Heun
    sample from given noise, never importing jax, tensorflow or diffariff_jax; it equals JAX's sample."""
    _, config, denoiser, params = release
    rng = np.random.default_rng(0)
    context = rng.standard_normal((1, T, 64)).astype(np.float32)
    clap = rng.standard_normal((1, config.model.clap_dim)).astype(np.float32)
    key = jax.random.key(3)
    init = np.asarray(jax.random.normal(jax.random.split(key, 4)[0], (1, T, 64)))
    np.savez(tmp_path / "inputs.npz", context=context, clap=clap, init=init)
    readme = (exported / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    script = code + f"""
import numpy as np, torch
assert tuple(latents.shape) == (1, 117, 64) and torch.isfinite(latents).all()
model = LatentDiffusion.from_pretrained({str(exported)!r})
arrays = np.load({str(tmp_path / 'inputs.npz')!r})
out = model.sample(num_frames={T}, context=torch.from_numpy(arrays["context"]), clap=torch.from_numpy(arrays["clap"]),
                   steps=6, noise=lambda kind, shape, p, step: torch.from_numpy(arrays["init"]))
np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
banned = [m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "tensorflow", "flax", "diffariff_jax")]
assert not banned, banned
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", script], cwd=exported.parent, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
    cfg = config.sampler.copy_and_resolve_references()
    cfg.steps = 6
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(samplers.sample(denoiser, params, key, num_frames=T, sampler_cfg=cfg,
                                          context=context, clap=clap))
    theirs = np.load(tmp_path / "out.npy")
    assert np.abs(ours - theirs).max() <= 1e-4 * max(np.abs(ours).max(), 1.0)


def test_round_trip_is_bit_exact(exported, release, tmp_path):
    back = tmp_path / "back"
    assert export_main(["--from", "torch", "--checkpoint", str(exported), "--out", str(back)]) == 0
    config, params = checkpoint.load_for_inference(back, kind="ldm")
    assert config.model.to_dict() == release[1].model.to_dict()
    original = jax.tree_util.tree_flatten_with_path(release[3])[0]
    restored = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    assert len(restored) == len(original)
    for path, value in original:
        got = np.asarray(restored[path])
        assert got.dtype == np.float32 and np.array_equal(got, np.asarray(value)), jax.tree_util.keystr(path)


def test_fine_tuned_torch_weights_come_back(exported, release, tmp_path):
    """Weights changed in PyTorch and saved with save_pretrained: the JAX release computes what torch does."""
    sys.path.insert(0, str(exported))
    try:
        from diffariff_torch import LatentDiffusion
    finally:
        sys.path.remove(str(exported))
    model = LatentDiffusion.from_pretrained(exported)
    with torch.no_grad():
        model.denoiser.model.out_conv.weight.mul_(1.5)
        model.denoiser.model.null_clap.add_(0.25)
    model.save_pretrained(tmp_path / "tuned")
    assert export_main(["--from", "torch", "--checkpoint", str(tmp_path / "tuned"),
                        "--out", str(tmp_path / "rel")]) == 0
    _, params = checkpoint.load_for_inference(tmp_path / "rel", kind="ldm")
    x = np.random.default_rng(0).standard_normal((2, T, 64)).astype(np.float32)
    clap = np.zeros((2, 32), np.float32)
    dropped = np.array([True, True])
    with torch.no_grad():
        theirs = model(torch.from_numpy(x), torch.tensor([0.5, 3.0]), torch.from_numpy(x), torch.from_numpy(clap),
                       torch.from_numpy(dropped)).numpy()
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(release[2](params, x, jnp.array([0.5, 3.0]), context=x, clap=clap, clap_dropped=dropped))
        before = np.asarray(release[2](release[3], x, jnp.array([0.5, 3.0]), context=x, clap=clap,
                                       clap_dropped=dropped))
    assert np.abs(ours - theirs).max() < 1e-5 and np.abs(ours - before).max() > 1e-3


def test_raw_params_come_from_the_workdir(tmp_path):
    config, _, ema = tiny_ldm(seed=1)
    _, _, raw = tiny_ldm(seed=2)
    workdir = tmp_path / "run"
    checkpoint.write_config(workdir, config)
    manager = checkpoint.make_manager(workdir, config.train)
    checkpoint.save(manager, 7, {"params": raw, "ema_params": ema, "step": 7}, config, {"seed": 0, "step": 7},
                    force=True)
    manager.wait_until_finished()
    manager.close()
    for flag, want in (([], ema), (["--raw-params"], raw)):
        out = tmp_path / f"out{len(flag)}"
        assert export_main(["--checkpoint", str(workdir), "--to", "torch", "--out", str(out)] + flag) == 0
        got = names.load_safetensors(out / "model.safetensors")["null_clap"]
        np.testing.assert_array_equal(got, np.asarray(want["null_clap"]))


def test_unknown_target_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        export_main(["--checkpoint", str(tmp_path), "--to", "onnx", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 1
    one_line_error(capsys, "--to", "onnx")


def test_non_empty_out_needs_overwrite(release, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["--checkpoint", str(release[0]), "--to", "torch", "--out", str(out)]
    assert export_main(args) == 1
    one_line_error(capsys, str(out), "--overwrite")
    assert export_main(args + ["--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").exists()


def test_raw_params_of_a_release_dir_is_one_line(release, tmp_path, capsys):
    assert export_main(["--checkpoint", str(release[0]), "--to", "torch", "--out", str(tmp_path / "o"),
                        "--raw-params"]) == 1
    one_line_error(capsys, "--raw-params", "release dir")


def test_bad_state_dicts_name_the_tensors(exported, tmp_path, capsys):
    tensors = names.load_safetensors(exported / "model.safetensors")
    cases = {
        "missing": lambda t: t.pop("mid0.attn.qkv.weight"),
        "unexpected": lambda t: t.__setitem__("extra.weight", np.zeros(3, np.float32)),
        "misshapen": lambda t: t.__setitem__("out_conv.bias", np.zeros(65, np.float32)),
    }
    needles = {"missing": "mid0.attn.qkv.weight", "unexpected": "extra.weight", "misshapen": "out_conv.bias (65,)"}
    for label, edit in cases.items():
        folder = tmp_path / label
        folder.mkdir()
        (folder / "config.json").write_text((exported / "config.json").read_text())
        broken = dict(tensors)
        edit(broken)
        names.save_safetensors(folder / "model.safetensors", broken, {})
        assert export_main(["--from", "torch", "--checkpoint", str(folder), "--out", str(tmp_path / "o")]) == 1
        one_line_error(capsys, label, needles[label])
    assert export_main(["--from", "torch", "--checkpoint", str(tmp_path / "nothing"),
                        "--out", str(tmp_path / "o")]) == 1
    one_line_error(capsys, "not an exported PyTorch folder")


def test_release_bundle_companions_travel_both_ways(release, tmp_path):
    """A release bundle (cae/, clap/, accompanist.json): the export carries the CAE as a PyTorch CAE folder
    and the CLAP as it is; the way back rebuilds a bundle that Accompanist.load accepts."""
    from diffariff_jax import release_bundle
    from diffariff_jax.accompanist import Accompanist
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.clap import ClapEmbedder
    from diffariff_jax.export.torch_port import ConsistencyAutoencoder
    from diffariff_jax.testing.tiny_clap import build_tiny_clap
    from export_fixture import tiny_cae

    _, config, _, params = release
    cae = Autoencoder(*tiny_cae(seed=4))
    clap = ClapEmbedder.from_pretrained(str(build_tiny_clap(tmp_path / "clap_src")))
    bundle = tmp_path / "bundle"
    release_bundle.write_release(bundle, config, params, cae=cae, clap=clap, step=7, ldm_fingerprint="0" * 16)
    out = tmp_path / "exported"
    assert export_main(["--checkpoint", str(bundle), "--to", "torch", "--out", str(out)]) == 0
    assert ConsistencyAutoencoder.from_pretrained(out / "cae").latent_dim == 64
    assert (out / "clap" / "config.json").exists() and (out / "accompanist.json").exists()
    assert "cae/" in json.loads((out / "config.json").read_text())["export"]["companions"]["cae"]
    back = tmp_path / "back"
    assert export_main(["--from", "torch", "--checkpoint", str(out), "--out", str(back)]) == 0
    acc = Accompanist.load(str(back))
    assert acc.clap_dim == config.model.clap_dim and acc.sample_rate == cae.sample_rate
    for a, b in zip(jax.tree.leaves(acc.cae.params), jax.tree.leaves(cae.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
