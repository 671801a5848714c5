"""Export an encoder or a fine-tuned classifier as portable weights.

Writes <out>/<name>.pt (a plain state_dict: torch.load(..., weights_only=True)),
<out>/<name>.safetensors and <out>/<name>.json (architecture, BN branch, input range,
normalisation, SHA-256 of the files). From a pretraining checkpoint the chosen BN branch is
kept (default pgd) and the projection head dropped; a fine-tuned classifier.pt is exported as
it is. Rebuild it with plain torch + rcs's model code (see the README, "Exporting weights"):

  net = rcs.models.build_exported(json.load(open("export/encoder.json")))
  net.load_state_dict(torch.load("export/encoder.pt", weights_only=True))

  rcs export --checkpoint runs/x/checkpoint.pt                        # encoder, pgd branch
  rcs export --checkpoint runs/x/checkpoint.pt --branch normal --out export/normal
  rcs export --checkpoint runs/x/finetune/aff/classifier.pt           # the classifier
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="an `rcs train` checkpoint.pt or a fine-tuned classifier.pt")
    p.add_argument("--what", default="auto", choices=["auto", "encoder", "classifier"],
                   help="auto: classifier for a classifier.pt, encoder for a pretraining "
                        "checkpoint (a SAT checkpoint also has a classifier)")
    p.add_argument("--branch", default=None,
                   help="BN branch to export from a multi-BN checkpoint (default: pgd, or the "
                        "model's only branch)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: <checkpoint folder>/export)")
    p.add_argument("--format", default="pt,safetensors", metavar="LIST",
                   help="comma-separated: pt, safetensors (default both)")
    p.add_argument("--name", default=None, help="file stem (default: encoder / classifier)")


def run(args: argparse.Namespace) -> int:
    from rcs.finetune.export import export_checkpoint

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    files = export_checkpoint(args.checkpoint, args.out, args.what, args.branch, formats,
                              args.name)
    for kind, path in files.items():
        print(f"[export] {kind:12s} {path}")
    return 0
