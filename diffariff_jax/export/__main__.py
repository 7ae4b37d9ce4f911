"""Model import/export command line.

  python -m diffariff_jax.export --checkpoint runs/ldm --to torch --out exported/ [--raw-params] [--overwrite]
      writes a folder a PyTorch user loads alone: model.safetensors, config.json, the PyTorch code
      (diffariff_torch/, needs only torch, safetensors, numpy) and a README (docs/export.md).
  python -m diffariff_jax.export --from torch --checkpoint exported/ --out runs/ldm_release
      reads such a folder (possibly fine-tuned in PyTorch) back into a release dir for generate and eval.
  python -m diffariff_jax.export --from music2latent --checkpoint music2latent.pt --out DIR
      converts the public Music2Latent PyTorch checkpoint into a CAE release dir.
  python -m diffariff_jax.export --checkpoint runs/cae --to music2latent --out DIR
      writes DIR/music2latent.pt for an m2l-shaped CAE, which the music2latent package loads with
      EncoderDecoder(load_path_inference=...).

--checkpoint takes a training workdir (its newest checkpoint) or a release dir. Every failure is one line
naming the input, exit status 1. Each direction is one entry of IMPORTERS / EXPORTERS.
"""
from __future__ import annotations

import argparse
import sys

from diffariff_jax import paths


def _checkpoint_params(args: argparse.Namespace):
    """(config, params) of --checkpoint: EMA params, or the raw ones with --raw-params (workdirs only)."""
    from diffariff_jax.training import checkpoint

    path = paths.resolve(args.checkpoint, "--checkpoint")
    if not args.raw_params:
        return checkpoint.load_for_inference(path)
    if (path / checkpoint.PARAMS_DIR).exists():
        raise checkpoint.CheckpointError(f"--raw-params: {args.checkpoint} is a release dir, which holds EMA "
                                         "params only; pass the training workdir")
    config = checkpoint.read_config(path)
    root = path / checkpoint.CHECKPOINT_DIR
    steps = sorted((int(p.name) for p in root.iterdir() if p.name.isdigit()), reverse=True) if root.exists() else []
    if not steps:
        raise checkpoint.CheckpointError(f"workdir {args.checkpoint} holds no checkpoint yet")
    return config, checkpoint._restore_params(root / str(steps[0]) / "state", "params")


def _release_out(args: argparse.Namespace):
    """--out for a release dir (local or a bucket URI); a local one that is not empty needs --overwrite."""
    from diffariff_jax.export.torch_folder import check_out_dir

    out = paths.resolve(args.out, "--out")
    if not paths.is_uri(out):
        check_out_dir(paths.local(out, "--out"), args.overwrite)
    return out


def _export_torch(args: argparse.Namespace) -> str:
    from diffariff_jax.export.torch_folder import check_out_dir, kind_of, to_torch_folder

    out = paths.local(args.out, "--out")
    config, params = _checkpoint_params(args)
    kind_of(config, args.checkpoint)
    check_out_dir(out, args.overwrite)
    which = "raw" if args.raw_params else "ema"
    info = to_torch_folder(config, params, out, source=str(args.checkpoint), which=which,
                           bundle_root=paths.resolve(args.checkpoint, "--checkpoint"))
    return (f"wrote {out}: {config.kind} ({config.get('variant', '?')}), {info['parameters']:,} parameters "
            f"({which} params) as model.safetensors + config.json + diffariff_torch/ + README.md")


def _export_music2latent(args: argparse.Namespace) -> str:
    from diffariff_jax.export.music2latent import MUSIC2LATENT_SAMPLE_RATE, check_music2latent_shape, save_music2latent
    from diffariff_jax.export.torch_folder import check_out_dir

    out = paths.local(args.out, "--out")
    config, params = _checkpoint_params(args)
    check_music2latent_shape(config, args.checkpoint)
    check_out_dir(out, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    count = save_music2latent(params, out / "music2latent.pt")
    rate = int(config.data.sample_rate)
    note = "" if rate == MUSIC2LATENT_SAMPLE_RATE else (
        f"; trained at {rate} Hz, while Music2Latent assumes {MUSIC2LATENT_SAMPLE_RATE} Hz input")
    return (f"wrote {out / 'music2latent.pt'}: {count} tensors; load it with "
            f"music2latent.EncoderDecoder(load_path_inference=...){note}")


def _import_torch(args: argparse.Namespace) -> str:
    import jax

    from diffariff_jax.export.torch_folder import from_torch_folder, import_bundle
    from diffariff_jax.training.checkpoint import save_release

    folder = paths.local(args.checkpoint, "--checkpoint")
    config, params = from_torch_folder(folder)
    out = _release_out(args)
    save_release(out, config, params)
    import_bundle(folder, out)
    count = sum(int(v.size) for v in jax.tree.leaves(params))
    return f"wrote {out}: {config.kind} release, {count:,} parameters from {folder}"


def _import_music2latent(args: argparse.Namespace) -> str:
    import jax

    from diffariff_jax.export.music2latent import convert_checkpoint
    from diffariff_jax.training.checkpoint import save_release

    config, params = convert_checkpoint(paths.local(args.checkpoint, "--checkpoint"))
    out = _release_out(args)
    save_release(out, config, params)
    count = sum(int(v.size) for v in jax.tree.leaves(params))
    return f"wrote {out}: Music2Latent CAE, {count:,} parameters, sample rate {config.data.sample_rate} Hz"


IMPORTERS = {"music2latent": _import_music2latent, "torch": _import_torch}
EXPORTERS = {"torch": _export_torch, "music2latent": _export_music2latent}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 1, like every other failure of this command
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m diffariff_jax.export", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=sorted(IMPORTERS),
                           help="import a foreign checkpoint or an exported folder into a release dir")
    direction.add_argument("--to", dest="target", choices=sorted(EXPORTERS),
                           help="export one of our checkpoints (a training workdir or a release dir)")
    parser.add_argument("--checkpoint", required=True, help="input: workdir, release dir, exported folder or file")
    parser.add_argument("--out", required=True, help="output folder (refused when it exists and is not empty)")
    parser.add_argument("--raw-params", action="store_true",
                        help="export the raw training params instead of the EMA params (workdirs only)")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = IMPORTERS[args.source] if args.source else EXPORTERS[args.target]
    try:
        print(run(args))
    except ValueError as e:  # ConversionError, CheckpointError, NameTableError, PathError: one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
