"""The real tiny LDM task with synthetic, deterministic latent batches, for the training-system tests.

Batches are a pure function of (split, step, process): a resumed or multi-host run sees exactly the
rows an uninterrupted single-host run would have seen (host h gets rows h*B/P .. (h+1)*B/P - 1).
"""
import numpy as np

from configs.ldm import get_config
from diffariff_jax.training.tasks import make_task


def tiny_ldm_setup(batch_size=4, num_steps=6, process_index=0, process_count=1, **train):
    config = get_config("tiny")
    # the smallest UNet the config allows (one scale, no attention): compile time is what these tests pay
    config.model.update(channels=16, channel_mult=(1,), attn_levels=(), clap_dim=16)
    config.data.crop_frames = 8
    config.train.update(dict(batch_size=batch_size, num_steps=num_steps, log_every=1, eval_every=num_steps,
                             ckpt_every=num_steps, tensorboard=False, eval_batches=1, warmup_steps=2), **train)
    task = make_task(config)
    shapes = {k: v.shape[1:] for k, v in task.dummy_batch(1).items()}
    rows = batch_size // process_count

    def batches(split, start_step):
        step = start_step
        while True:
            rng = np.random.default_rng([0 if split == "train" else 1, step])
            full = {k: rng.normal(size=(batch_size,) + s).astype(np.float32) for k, s in shapes.items()}
            full["clap"] /= np.linalg.norm(full["clap"], axis=-1, keepdims=True)
            yield {k: v[process_index * rows:(process_index + 1) * rows] for k, v in full.items()}
            step += 1

    return config, task, batches


# The same smallest UNet as command-line overrides, for runs through `python -m diffariff_jax.train`.
CLI_OVERRIDES = ("--config.model.channels=16", "--config.model.channel_mult=(1,)", "--config.model.attn_levels=()",
                 "--config.model.clap_dim=16", "--config.data.crop_frames=8")


def write_tiny_latents(root, num_examples=12, frames=12, clap_dim=16, seed=0):
    """A latents directory (2 shards + latents.json) of random unit-std latents, readable by LatentReader."""
    import dataclasses

    from diffariff_jax.data import latents

    rng = np.random.default_rng(seed)
    names = {f.name for f in dataclasses.fields(latents.LatentExample)}
    examples = []
    for i in range(num_examples):
        clap = rng.normal(size=(2, clap_dim)).astype(np.float32)
        fields = dict(target=rng.normal(size=(frames, 64)).astype(np.float32),
                      context=rng.normal(size=(frames, 64)).astype(np.float32),
                      clap=clap / np.linalg.norm(clap, axis=-1, keepdims=True), song_id=f"song{i // 3}",
                      instrument="violin", offset=4096 * i, clap_offsets=[0, 4096])
        examples.append(latents.LatentExample(**{k: v for k, v in fields.items() if k in names}))
    half = num_examples // 2
    latents.write_shard(root, 0, 2, examples[:half])
    latents.write_shard(root, 1, 2, examples[half:])
    latents.write_info(root, {"frames": frames, "latent_dim": 64, "clap_dim": clap_dim, "sample_rate": 48000})
    return root
