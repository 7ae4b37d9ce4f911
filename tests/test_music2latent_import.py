"""Music2Latent import: the real `music2latent` package (PyTorch) with random weights vs our Flax CAE
after `python -m diffariff_jax.export --from music2latent`. Encoder latents and one decoding step from
the same noise must agree to < 1e-4 (float32). Nothing is downloaded: the package's download hook is
patched and a random state dict is written first."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
m2l_inference = pytest.importorskip("music2latent.inference")
from music2latent.audio import to_representation_encoder  # noqa: E402
from music2latent.models import UNet  # noqa: E402

import jax.numpy as jnp  # noqa: E402

from diffariff_jax.autoencoder import Autoencoder  # noqa: E402
from diffariff_jax.export.__main__ import main as export_main  # noqa: E402
from diffariff_jax.export.music2latent import ConversionError, convert_state_dict  # noqa: E402
from diffariff_jax.models.cae import CAE  # noqa: E402

LATENT_FRAMES = 2  # 16 STFT frames: the shortest clip the 3 time-downsamplings allow twice over


def random_state_dict(seed: int) -> dict:
    """Music2Latent's generator with every tensor random (its zero-initialised layers included)."""
    torch.manual_seed(seed)
    sd = UNet().state_dict()
    gen = torch.Generator().manual_seed(seed + 1)
    for name, v in sd.items():
        if name.endswith("bias"):
            v.copy_(0.1 * torch.randn(v.shape, generator=gen))
        elif v.ndim == 1 or name.endswith("gain.scale"):  # norm gains, frequency gains
            v.copy_(1.0 + 0.1 * torch.randn(v.shape, generator=gen))
        else:
            v.copy_(torch.randn(v.shape, generator=gen) / np.sqrt(v[0].numel()))
    return sd


@pytest.fixture(scope="module")
def m2l_paths(tmp_path_factory):
    """(their checkpoint, our release dir converted from it by the import CLI)."""
    tmp = tmp_path_factory.mktemp("m2l")
    ckpt = tmp / "music2latent.pt"
    torch.save({"gen_state_dict": random_state_dict(0)}, ckpt)
    assert export_main(["--from", "music2latent", "--checkpoint", str(ckpt), "--out", str(tmp / "release")]) == 0
    return ckpt, tmp / "release"


@pytest.fixture(scope="module")
def models(m2l_paths, monkeypatch_module):
    monkeypatch_module.setattr(m2l_inference, "download_model", lambda: None)
    theirs = m2l_inference.EncoderDecoder(load_path_inference=str(m2l_paths[0]), device="cpu")
    return theirs, Autoencoder.load(str(m2l_paths[1]))


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_converted_config_is_music2latent(models):
    _, ours = models
    assert ours.sample_rate == 44100 and ours.latent_dim == 64 and ours.shape.time_reduction == 8
    n_ours = sum(int(np.size(v)) for v in __import__("jax").tree.leaves(ours.params))
    n_theirs = sum(v.numel() for v in models[0].gen.state_dict().values())
    assert n_theirs - n_ours == 4 * (256 * 512 + 512)  # the up-path's never-called proj_emb layers


def test_encoder_and_one_decoding_step_match(models, capsys):
    theirs, ours = models
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(LATENT_FRAMES * 4096 + 1536 + 77)).astype(np.float32)
    # Their public encode (crops to whole latent frames) vs our encoder on the same spectrogram.
    lat_theirs = theirs.encode(audio).numpy().transpose(0, 2, 1)  # [1, frames, 64], scaled 1/0.06
    n = LATENT_FRAMES * 4096 + 1536
    spec_theirs = to_representation_encoder(torch.from_numpy(audio[None, :n])).numpy().transpose(0, 2, 3, 1)
    spec_ours = np.asarray(ours.stft.spectrogram(jnp.asarray(audio[None, :n])))
    stft_err = np.abs(spec_ours - spec_theirs).max()
    raw = ours.model.apply(ours.params, jnp.asarray(spec_theirs), method=CAE.encode)
    lat_ours = np.asarray(raw) / ours.latent_scale
    enc_err = np.abs(lat_ours - lat_theirs).max()
    # One consistency step from the same noise: their decode_to_representation draws torch.randn.
    torch.manual_seed(7)
    noise = torch.randn((1, 2, 1024, LATENT_FRAMES * 8)) * 80.0
    torch.manual_seed(7)
    with torch.no_grad():
        rep_theirs = m2l_inference.decode_to_representation(
            theirs.gen, torch.from_numpy(lat_theirs.transpose(0, 2, 1) * 0.06), 1, device="cpu").numpy()
    pyramid = ours.model.apply(ours.params, jnp.asarray(lat_theirs * 0.06), method=CAE.pyramid)
    f = ours.consistency.precondition(
        lambda x, s: ours.model.apply(ours.params, x, s, pyramid, method=CAE.network))
    rep_ours = np.asarray(f(jnp.asarray(noise.numpy().transpose(0, 2, 3, 1)), jnp.full((1,), 80.0)))
    dec_err = np.abs(rep_ours - rep_theirs.transpose(0, 2, 3, 1)).max()
    with capsys.disabled():
        print(f"\nmusic2latent parity: stft {stft_err:.2e}, latents (x 1/0.06) {enc_err:.2e} "
              f"(|max| {np.abs(lat_theirs).max():.1f}), one decode step {dec_err:.2e} "
              f"(|max| {np.abs(rep_theirs).max():.2f})")
    assert stft_err < 1e-4
    assert enc_err < 1e-4
    assert dec_err < 1e-4


def test_bad_checkpoints_get_one_line_errors(tmp_path, capsys):
    assert export_main(["--from", "music2latent", "--checkpoint", str(tmp_path / "nope.pt"),
                        "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "no such checkpoint file" in err and err.count("\n") == 1
    torch.save({"something": 1}, tmp_path / "other.pt")
    assert export_main(["--from", "music2latent", "--checkpoint", str(tmp_path / "other.pt"),
                        "--out", str(tmp_path / "o")]) == 1
    assert "no 'gen_state_dict'" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="lacks 'encoder.conv_inp.weight'"):
        convert_state_dict({"conv_inp.weight": np.zeros((64, 2, 3, 3), np.float32)})


def test_export_to_music2latent_loads_in_the_package(m2l_paths, models, tmp_path):
    """Our m2l CAE -> `--to music2latent` -> the real package's EncoderDecoder: the same tensors as the
    checkpoint it was imported from (the never-called proj_emb layers as zeros), and its encode matches ours."""
    ckpt, release = m2l_paths
    _, ours = models
    assert export_main(["--checkpoint", str(release), "--to", "music2latent", "--out", str(tmp_path / "m2l")]) == 0
    exported = tmp_path / "m2l" / "music2latent.pt"
    new = torch.load(exported, weights_only=False)["gen_state_dict"]
    old = torch.load(ckpt, weights_only=False)["gen_state_dict"]
    assert set(new) == set(old)
    unused = [k for k in old if k.startswith("decoder.bottleneck_layers.") and ".proj_emb." in k]
    assert len(unused) == 8
    for k in old:
        assert torch.equal(new[k], torch.zeros_like(old[k]) if k in unused else old[k]), k
    again = m2l_inference.EncoderDecoder(load_path_inference=str(exported), device="cpu")
    audio = (0.3 * np.random.default_rng(5).standard_normal(LATENT_FRAMES * 4096 + 1536)).astype(np.float32)
    lat_package = again.encode(audio).numpy().transpose(0, 2, 1)
    spec = to_representation_encoder(torch.from_numpy(audio[None])).numpy().transpose(0, 2, 3, 1)
    lat_ours = np.asarray(ours.model.apply(ours.params, jnp.asarray(spec), method=CAE.encode)) / ours.latent_scale
    assert np.abs(lat_package - lat_ours).max() < 1e-4


def test_export_to_music2latent_needs_the_m2l_shape(tmp_path, capsys):
    from diffariff_jax.training.checkpoint import save_release
    from export_fixture import tiny_cae, tiny_ldm

    save_release(tmp_path / "tiny_cae", *tiny_cae())
    assert export_main(["--checkpoint", str(tmp_path / "tiny_cae"), "--to", "music2latent", "--out",
                        str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an m2l-shaped CAE" in err and "base_channels=4 (m2l: 64)" in err
    config, _, params = tiny_ldm()
    save_release(tmp_path / "ldm", config, params)
    assert export_main(["--checkpoint", str(tmp_path / "ldm"), "--to", "music2latent",
                        "--out", str(tmp_path / "o")]) == 1
    assert "holds a 'ldm' model; --to music2latent needs a CAE" in capsys.readouterr().err
