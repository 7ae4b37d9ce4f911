"""The CAE and CLAP that belong to an LDM checkpoint: finding them, checking them, bundling them.

An LDM's latents only mean something to the CAE that made its training records, and its CLAP input only
to the CLAP that embedded them. Where they are found, first match wins:
  1. the caller's override (`--cae` / `--clap`);
  2. a release dir's bundled copies, `cae/` (a CAE release dir) and `clap/` (a save_pretrained dir),
     described by `accompanist.json` (step, fingerprints, where the copies came from);
  3. what precompute recorded in `latents.json` of the run's `config.data.records_dir` (paths plus sha256
     fingerprints of the weights). A CAE or CLAP found there whose weights changed since the records were
     made is refused: it would decode the latents into the wrong audio.
Anything missing is a one-line `CompanionError` naming the flag that supplies it.

    write_release(out, config, params, cae=ae, clap=clap, step=step)   # a dir another machine can use
    python -m diffariff_jax.release_bundle --checkpoint runs/ldm --out releases/ldm [--cae DIR] [--clap DIR]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from typing import Any

import jax
import ml_collections
from etils import epath

from diffariff_jax.training.checkpoint import CONFIG_FILE, PARAMS_DIR, CheckpointError, save_release

log = logging.getLogger(__name__)

BUNDLE_FILE = "accompanist.json"
CAE_DIR = "cae"
CLAP_DIR = "clap"


class CompanionError(ValueError):
    """A CAE or CLAP that cannot be found or does not fit the LDM: one line naming the flag to fix it."""


def fingerprint(arrays: Any) -> str:
    """16 hex digits of sha256 over the arrays' bytes; the same function precompute records in latents.json."""
    from diffariff_jax.precompute import weights_fingerprint

    return weights_fingerprint(arrays)


def cae_fingerprint(ae: Any) -> str:
    return fingerprint(jax.tree.leaves(ae.params))


def clap_fingerprint(clap: Any) -> str:
    return fingerprint(t.detach().float().cpu().numpy() for t in clap.model.state_dict().values())


def read_bundle(root: epath.Path) -> dict | None:
    """The release dir's accompanist.json, or None for a training workdir / plain release dir."""
    path = root / BUNDLE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def records_info(config: ml_collections.ConfigDict) -> dict:
    """latents.json of the run's training records ({} when the config names none or it is gone)."""
    from diffariff_jax.data import latents

    records = config.get("data", {}).get("records_dir", "")
    if not records:
        return {}
    try:
        return latents.read_info(records)
    except (FileNotFoundError, ValueError):
        log.warning("%s: the training records' latents.json is not readable here", records)
        return {}


def find_cae(root: epath.Path, config: ml_collections.ConfigDict, override: str | None) -> Any:
    """The Autoencoder for this LDM (see the module docstring for the search order)."""
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.paths import resolve

    if override:
        return _load(Autoencoder.load, resolve(override, "--cae"), "--cae")
    if (root / CAE_DIR / CONFIG_FILE).exists():
        return _load(Autoencoder.load, root / CAE_DIR, "--cae")
    info = records_info(config)
    recorded = info.get("cae")
    if not recorded:
        raise CompanionError(f"{root}: no CAE is recorded for this LDM (no bundled {CAE_DIR}/, no records "
                             "latents.json); pass --cae CAE_WORKDIR_OR_RELEASE")
    if not epath.Path(recorded).exists():
        raise CompanionError(f"{root}: the CAE its records were made with, {recorded}, does not exist here; "
                             "pass --cae CAE_WORKDIR_OR_RELEASE")
    ae = _load(Autoencoder.load, recorded, "--cae")
    _check_unchanged("CAE", recorded, info.get("cae_weights"), cae_fingerprint(ae), "--cae")
    return ae


def find_clap(root: epath.Path, config: ml_collections.ConfigDict, override: str | None) -> Any:
    """The ClapEmbedder for this LDM (see the module docstring for the search order)."""
    from diffariff_jax.clap import ClapEmbedder

    if override:
        return _load(ClapEmbedder.from_pretrained, override, "--clap")
    if (root / CLAP_DIR).exists():
        return _load(ClapEmbedder.from_pretrained, str(root / CLAP_DIR), "--clap")
    info = records_info(config)
    recorded = info.get("clap")
    if not recorded:
        raise CompanionError(f"{root}: no CLAP is recorded for this LDM (no bundled {CLAP_DIR}/, no records "
                             "latents.json); pass --clap NAME_OR_DIR")
    clap = _load(ClapEmbedder.from_pretrained, recorded, "--clap")
    _check_unchanged("CLAP", recorded, info.get("clap_weights"), clap_fingerprint(clap), "--clap")
    return clap


def _load(loader: Any, source: Any, flag: str) -> Any:
    try:
        return loader(str(source))
    except ValueError as err:  # CheckpointError, ClapLoadError, AudioError
        raise CompanionError(f"{flag} {source}: {str(err).splitlines()[0]}") from None


def _check_unchanged(what: str, source: str, recorded: str | None, actual: str, flag: str) -> None:
    if recorded and recorded != actual:
        raise CompanionError(f"the {what} at {source} changed since the training records were made (weights "
                             f"{actual}, records say {recorded}); pass {flag} with the {what} they were made with")


def write_release(out: epath.Path, config: ml_collections.ConfigDict, params: Any, *, cae: Any, clap: Any,
                  step: int, ldm_fingerprint: str) -> None:
    """An LDM release dir that generates on another machine: config + EMA params, a CAE release in cae/,
    the CLAP in clap/ (save_pretrained) and accompanist.json. `out` must not hold params yet."""
    if (out / PARAMS_DIR).exists():
        raise CheckpointError(f"release dir {out} already holds params; choose an empty directory")
    save_release(out, config, params)
    save_release(out / CAE_DIR, cae.config, cae.params)
    with tempfile.TemporaryDirectory() as local:  # save_pretrained writes local files; out may be gs://
        clap.model.save_pretrained(local)
        clap.processor.save_pretrained(local)
        (out / CLAP_DIR).mkdir(parents=True, exist_ok=True)
        for item in epath.Path(local).iterdir():
            item.copy(out / CLAP_DIR / item.name, overwrite=True)
    bundle = {"step": int(step), "fingerprint": ldm_fingerprint, "cae_weights": cae_fingerprint(cae),
              "clap_weights": clap_fingerprint(clap), "clap_source": clap.name}
    (out / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    """Writes a self-contained LDM release dir (EMA params, config, CAE, CLAP); errors are one line, exit 1."""
    p = argparse.ArgumentParser(prog="python -m diffariff_jax.release_bundle", description=main.__doc__)
    p.add_argument("--checkpoint", required=True, help="LDM training workdir (or release dir to re-bundle)")
    p.add_argument("--out", required=True, help="new release dir (must not hold params yet)")
    p.add_argument("--cae", help="CAE workdir or release dir (default: the one the LDM's records were made with)")
    p.add_argument("--clap", help="CLAP name or directory (default: the one the LDM's records were made with)")
    args = p.parse_args(argv)
    from diffariff_jax.accompanist import Accompanist

    try:
        acc = Accompanist.load(args.checkpoint, cae=args.cae, clap=args.clap)
        acc.save_release(args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr, flush=True)
        return 1
    print(f"wrote {args.out}: step {acc.step}, fingerprint {acc.fingerprint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
