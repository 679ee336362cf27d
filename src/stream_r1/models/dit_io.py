"""A DiT to and from one safetensors file whose metadata carries its config, so a file of another
architecture is refused with a clear message before any tensor is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..common.weights import (
    CONVERT_HINT,
    CheckpointError,
    load_fitting,
    load_state_dict,
    resolve_checkpoint,
    save_state_dict,
)
from .dit import DiT, DiTConfig

DIT_FORMAT = "stream-r1-dit"


def save_dit(path: Path, model: DiT, extra: dict | None = None) -> None:
    """Save a DiT with its config (and optional JSON-able extras) in the metadata."""
    meta = {"format": DIT_FORMAT, "config": json.dumps(model.cfg.to_dict())}
    if extra:
        meta["extra"] = json.dumps(extra)
    save_state_dict(path, model.state_dict(), meta)


def keep_blocks(tensors: dict[str, torch.Tensor], num_layers: int, layers, path) -> dict[str, torch.Tensor]:
    """The state dict with only transformer blocks `layers` (in that order), renumbered 0..n-1.

    A layer-dropped student (issue 20): every tensor outside the blocks is kept, so the embeddings, head
    and toy convs are the checkpoint's and the kept blocks see the residual stream they were trained on.
    """
    layers = [int(i) for i in layers]
    if not layers or any(not 0 <= i < num_layers for i in layers) or len(set(layers)) != len(layers):
        raise CheckpointError(f"layers={layers} for {path}: give distinct block indices in 0..{num_layers - 1}")
    kept = {k: v for k, v in tensors.items() if not k.startswith("blocks.")}
    for new, old in enumerate(layers):
        prefix = f"blocks.{old}."
        kept.update({f"blocks.{new}.{k[len(prefix):]}": v for k, v in tensors.items() if k.startswith(prefix)})
    return kept


def load_dit(name_or_path: str | os.PathLike, **overrides) -> tuple[DiT, dict]:
    """Build a DiT from a checkpoint; `overrides` change config fields (e.g. causal=True).

    `layers=[0, 2, 5]` keeps only those transformer blocks (a smaller network started from the file's weights).
    """
    path = resolve_checkpoint(name_or_path)
    tensors, meta = load_state_dict(path)
    if meta.get("format") != DIT_FORMAT:
        raise CheckpointError(
            f"{path} is not a stream-r1 DiT checkpoint (format={meta.get('format')!r}); "
            "pass a file written by stream-r1, or if it is a Wan 2.1 transformer, " + CONVERT_HINT.format(path=path)
        )
    stored = json.loads(meta["config"])
    layers = overrides.pop("layers", None)
    if layers is not None:
        tensors = keep_blocks(tensors, int(stored["num_layers"]), layers, path)
        overrides["num_layers"] = len(layers)
    cfg = DiTConfig.from_dict({**stored, **overrides})
    model = DiT(cfg)
    load_fitting(model, tensors, path, "DiT")
    return model, json.loads(meta.get("extra", "{}"))
