"""Safe weight files: atomic safetensors writes, safe loads, and the short names of the shipped weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

WEIGHTS_DIR = Path(__file__).parents[1] / "weights"


SHORT_NAMES = {
    "toy-teacher": "toy-teacher.safetensors",
    "toy-ode-init": "toy-ode-init.safetensors",
    "toy-dmd": "toy-dmd.safetensors",
    "toy-stream-r1": "toy-stream-r1.safetensors",
    "toy-reward": "toy-reward.safetensors",
    "toy-reward-speed": "toy-reward-speed.safetensors",  # toy-reward fine-tuned with wrong_speed pairs (session 6)
    "toy-reward-pref": "toy-reward-pref.safetensors",  # toy-reward fine-tuned on annotated generated pairs (issue 20)
    # The small student (issue 20): teacher blocks 0, 2, 5 only, so it has room below its teacher.
    "toy-ode-init-small": "toy-ode-init-small.safetensors",
    "toy-dmd-small": "toy-dmd-small.safetensors",
    "toy-stream-r1-small": "toy-stream-r1-small.safetensors",
    "toy-teacher-long": "toy-teacher-long.safetensors",  # the long world's teacher (issue 18, docs/teacher-long.md)
    "toy-ode-init-long": "toy-ode-init-long.safetensors",  # the long world's students (issue 18, docs/long-students.md)
    "toy-dmd-long": "toy-dmd-long.safetensors",
    "toy-stream-r1-long": "toy-stream-r1-long.safetensors",
}


GENERATORS = ("toy-teacher", "toy-ode-init", "toy-dmd", "toy-stream-r1",
              "toy-ode-init-small", "toy-dmd-small", "toy-stream-r1-small",
              "toy-teacher-long", "toy-ode-init-long", "toy-dmd-long", "toy-stream-r1-long")  # the DiTs


CONVERT_HINT = ("convert it once with: stream-r1 convert {path} --components Wan2.1-T2V-1.3B-Diffusers "
                "--out student.safetensors")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """Map a short name or a path to an existing file."""
    key = str(name_or_path)
    if key in SHORT_NAMES:
        path = WEIGHTS_DIR / SHORT_NAMES[key]
        if not path.exists():
            raise CheckpointError(f"shipped checkpoint {key!r} is missing at {path}; reinstall the package")
        return path
    path = Path(key)
    if path.is_dir() and (path / "model.safetensors").exists():
        path = path / "model.safetensors"
    elif path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a stream-r1 checkpoint; if it is a Wan 2.1 download, "
                              + CONVERT_HINT.format(path=path))
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint {key!r}: not a file and not one of the short names {sorted(SHORT_NAMES)}"
        )
    return path


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give outputs the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_state_dict(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Atomically save tensors with string metadata as safetensors."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def is_torch_pickle(path: Path) -> bool:
    """A torch.save file (a zip archive or a legacy pickle), e.g. a Self-Forcing `.pt`, not safetensors."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: an 8-byte header length, then its JSON header
        return False
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def load_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load tensors and metadata of a safetensors file; a corrupt file raises CheckpointError."""
    if Path(path).is_file() and is_torch_pickle(path):
        raise CheckpointError(f"{path} is a torch .pt file, not safetensors; if it holds a Wan / Self-Forcing "
                              "model, " + CONVERT_HINT.format(path=path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not safetensors ({err}); use another file") from err
    return tensors, meta


def load_fitting(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path, what: str) -> None:
    """Load `tensors` into `model`, or refuse in one line naming the keys and shapes that do not fit."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    bad_shapes = [k for k, v in tensors.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(
            f"{path} does not fit the {what} config it carries: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shapes {bad_shapes[:5]}; the file was probably edited by hand"
        )
    model.load_state_dict(tensors)
