"""diffariff-jax: Diff-A-Riff (latent diffusion accompaniment generation) in JAX/Flax."""
from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name: str) -> list[str]:
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="diffariff-jax",
    version="0.1.0",
    description="Diff-A-Riff in JAX/Flax: train, sample, evaluate and export accompaniment generators",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["diffariff_jax", "diffariff_jax.*", "configs"]),
    install_requires=_requirements("requirements.txt"),
    extras_require={"test": _requirements("requirements-test.txt")},
)
