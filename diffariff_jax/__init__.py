"""diffariff-jax: Diff-A-Riff in JAX/Flax.

Subpackages: audio (I/O, STFT), models (CAE, 1-D UNet), diffusion (EDM, consistency, samplers, modes),
data (tf.data), training (mesh, state, checkpoints, loop), metrics, export. `models` and `diffusion` are
pure JAX; TensorFlow stays in `data`, torch in `clap.py` and `export/torch_port`.
"""

__version__ = "0.1.0"
