"""PyTorch twin of the consistency autoencoder vs the JAX one, random tiny weights (float32, JAX matmul
precision "highest"): the compressed STFT and its inverse, encode, and a 1-step and a 2-step decode from
the same noise (the noise JAX draws from its key, handed to the twin through its `noise` hook), for `tiny`
and for `demo` (the band-energy shortcut); then the CAE export folder: a bit-exact way back."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from diffariff_jax import autoencoder as ae_lib
from diffariff_jax.export import names
from diffariff_jax.export.__main__ import main as export_main
from diffariff_jax.export.torch_port import ConsistencyAutoencoder
from diffariff_jax.training import checkpoint
from diffariff_jax.training.checkpoint import config_to_dict
from export_fixture import tiny_cae

FRAMES = 2  # latent frames: 16 STFT frames


@pytest.fixture(scope="module", autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module", params=["tiny", "demo"])
def models(request):
    config, params = tiny_cae(seed=0, variant=request.param)
    ours = ae_lib.Autoencoder(config, params)
    twin = ConsistencyAutoencoder(config_to_dict(config))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in names.flax_to_torch(params["params"]).items()})
    return ours, twin.eval()


def audio(seed: int, samples: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal((2, samples))).astype(np.float32)


def test_stft_and_inverse_match(models):
    ours, twin = models
    wav = audio(0, 4096 * FRAMES)
    spec_ours = np.asarray(ours.stft.wave_to_spec(jnp.asarray(wav), 8))  # [b, freq, frames, 2]
    spec_twin = twin.stft.wave_to_spec(torch.from_numpy(wav), 8).numpy().transpose(0, 2, 3, 1)
    assert np.abs(spec_ours - spec_twin).max() <= 1e-4 * np.abs(spec_ours).max()
    back_ours = np.asarray(ours.stft.spec_to_wave(jnp.asarray(spec_ours), wav.shape[1]))
    back_twin = twin.stft.spec_to_wave(torch.from_numpy(spec_ours.transpose(0, 3, 1, 2).copy()), wav.shape[1]).numpy()
    assert np.abs(back_twin - wav).max() < 1e-4 and np.abs(back_ours - back_twin).max() < 1e-5


def test_encode_matches(models):
    ours, twin = models
    wav = audio(1, 4096 * FRAMES - 300)  # not whole frames: padding is part of the twin
    lat_ours = ours.encode(wav)
    lat_twin = twin.encode(torch.from_numpy(wav)).numpy()
    err = np.abs(lat_ours - lat_twin).max()
    print(f"CAE encode: max |jax - torch| = {err:.3g}, latent scale {np.abs(lat_ours).max():.3g}")
    assert lat_ours.shape == lat_twin.shape == (2, FRAMES, 64) and err <= 1e-4


@pytest.mark.parametrize("steps", [1, 2])
def test_decode_from_the_same_noise_matches(models, steps):
    ours, twin = models
    latents = np.random.default_rng(2).standard_normal((2, FRAMES, 64)).astype(np.float32)
    key = jax.random.key(9)
    wav_ours = np.asarray(ae_lib._decode_raw(ours.params, jnp.asarray(latents * ours.latent_scale), key,
                                             shape=ours.shape, stft=ours.stft, consistency=ours.consistency,
                                             steps=steps, band_renorm=ours.band_renorm))
    keys = jax.random.split(key, steps + 1)

    def noise(kind, shape, chunk, step):
        b, c, f, t = shape
        return torch.from_numpy(np.array(jax.random.normal(keys[step], (b, f, t, c))).transpose(0, 3, 1, 2).copy())

    wav_twin = twin.decode(torch.from_numpy(latents), steps=steps, noise=noise).numpy()
    err = np.abs(wav_ours - wav_twin).max()
    print(f"CAE {steps}-step decode: max |jax - torch| = {err:.3g}, waveform scale {np.abs(wav_ours).max():.3g}")
    assert np.mean(np.abs(wav_ours) < 1.0) > 0.9  # not hidden by the [-1, 1] clip
    assert err <= 1e-4 * max(np.abs(wav_ours).max(), 1.0)


def test_band_matrix_matches_librosa():
    """The twin computes the shortcut's mel bands itself (it imports only torch); librosa is the reference."""
    import librosa

    from diffariff_jax.export.torch_port.cae import band_matrix

    for rate, bands in ((48000, 64), (44100, 32)):
        want = librosa.filters.mel(sr=rate, n_fft=2048, n_mels=bands)[:, :1024]
        want = want / want.sum(axis=1, keepdims=True)
        got = band_matrix({"freq_bins": 1024, "band_shortcut": bands, "sample_rate": rate}).numpy()
        assert np.abs(got - want).max() < 1e-6 * want.max()


def test_band_matching_matches_with_the_gain_capped():
    """The twin's band matching against models/cae.py's on a target that asks some bands for more than the
    cap (+40 dB) and others for a cut or a small raise."""
    from configs.cae import get_config
    from diffariff_jax.export.torch_port.cae import band_matrix, match_band_energies as twin_match
    from diffariff_jax.models.cae import CAEShape, band_energies, match_band_energies

    config = get_config("demo")
    shape = CAEShape.from_config(config.model)
    rng = np.random.default_rng(5)
    spec = (rng.standard_normal((1, shape.freq_bins, 3 * shape.time_reduction, 2))
            * 10.0 ** np.linspace(0.0, -3.0, shape.freq_bins)[:, None, None]).astype(np.float32)
    target = np.asarray(band_energies(shape, jnp.asarray(spec))) + rng.choice([2.0, -0.7, 0.2], (1, 3, 64))
    ours = np.asarray(match_band_energies(shape, jnp.asarray(spec), jnp.asarray(target, jnp.float32), 12.0))
    model = config_to_dict(config)["model"]
    theirs = twin_match(model, band_matrix(model), torch.from_numpy(spec.transpose(0, 3, 1, 2).copy()),
                        torch.from_numpy(target.astype(np.float32)), 12.0).numpy().transpose(0, 2, 3, 1)
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(ours).max()
    assert np.abs(ours).max() < 10.0 ** (12.0 / 20.0) * np.abs(spec).max() * 1.0001  # the cap held


@pytest.mark.parametrize("variant", ["tiny", "demo"])
def test_cae_export_round_trip_is_bit_exact(tmp_path, variant):
    config, params = tiny_cae(seed=3, variant=variant)
    checkpoint.save_release(tmp_path / "cae", config, params)
    assert export_main(["--checkpoint", str(tmp_path / "cae"), "--to", "torch", "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "diffariff_torch" / "autoencoder.py").exists()
    twin = ConsistencyAutoencoder.from_pretrained(tmp_path / "x")
    assert twin.sample_rate == config.data.sample_rate
    assert export_main(["--from", "torch", "--checkpoint", str(tmp_path / "x"), "--out", str(tmp_path / "back")]) == 0
    back_config, back = checkpoint.load_for_inference(tmp_path / "back", kind="cae")
    assert back_config.model.to_dict() == config.model.to_dict()
    want = jax.tree_util.tree_flatten_with_path(params)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(back)[0])
    assert len(got) == len(want)
    for path, value in want:
        assert np.array_equal(np.asarray(got[path]), np.asarray(value)), jax.tree_util.keystr(path)
