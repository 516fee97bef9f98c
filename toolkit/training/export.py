"""Export a trained checkpoint as a fine-tuned model the registry can ship.

    python -m toolkit.training.export runs/mask_tune/best.pt \
        --out inference/weights/intel_0095_mask/intel_0095_mask.pt

writes the student's tensors (float16) with its base model's name and version
(`inference.embedders.fine_tuned`), prints the digest the registry's version must end with,
and writes a manifest beside it: the config, the validation metrics of the chosen checkpoint,
the command that trained it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from inference.embedders import embedder_spec
from inference.embedders.fine_tuned import BASES, FORMAT
from inference.embedders.spec import files_digest
from toolkit.training.checkpoint import load_checkpoint
from toolkit.training.curves import plot_run


def export(checkpoint: Path, out: Path, *, command: str = "") -> dict:
    state = load_checkpoint(checkpoint)
    base = state["backbone_name"]
    if base not in BASES:
        raise SystemExit(
            f"{checkpoint}: {base} is not a registry model a fine-tuned file can name ({sorted(BASES)})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "base": base,
        "base_version": embedder_spec(base).version,
        "state_dict": {key: value.detach().half() for key, value in state["backbone"].items()},
    }
    torch.save(payload, out)
    manifest = {
        "base": base,
        "base_version": payload["base_version"],
        "digest": files_digest(out),
        "step": state["step"],
        "validation": state.get("validation"),
        "config": state["config"],
        "command": command,
    }
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of toolkit.training.train (e.g. best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the fine-tuned weights file to write")
    parser.add_argument("--command", default="", help="the training command, recorded in the manifest")
    parser.add_argument("--log", type=Path, default=None, help="copy the run's logs and curves here")
    args = parser.parse_args(argv)
    manifest = export(args.checkpoint, args.out, command=args.command)
    if args.log is not None:
        run = args.checkpoint.parent
        args.log.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.csv", "validation.csv", "config.json"):
            if (run / name).is_file():
                shutil.copyfile(run / name, args.log / name)
        title = f"{manifest['base']} fine-tuned, best step {manifest['step']}"
        plot_run(run, args.log / "curves.png", title=title)
    print(f"{args.out}: base {manifest['base']}, digest {manifest['digest']}", file=sys.stderr)
    print(json.dumps({k: manifest[k] for k in ("base", "digest", "step", "validation")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
