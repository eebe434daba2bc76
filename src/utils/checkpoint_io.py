"""Reading and writing checkpoint files safely.

Writes go to a temporary file in the same folder, are fsynced and renamed into
place. Reads use ``torch.load(weights_only=True)``, which refuses pickled code:
a checkpoint can hold tensors, numbers, strings, lists and dicts, nothing else.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Sequence, Union

import torch

from src.exceptions import CheckpointError, FormatVersionError
from src.utils.io import atomic_write

# 2: training state as the state_dicts of its parts, data fingerprint, model-directory manifest.
CHECKPOINT_FORMAT_VERSION = 2
# Files of version 1 hold everything a model needs, so model directories and best-model
# weights written by earlier releases still load; resuming training needs version 2.
WEIGHTS_FORMAT_VERSIONS = (1, 2)

PathLike = Union[str, "os.PathLike[str]"]


def content_digest(value: Any) -> str:
    """SHA-256 over a checkpoint's content: every tensor's bytes and every other value,
    in order. Stored in the file, it exposes bit flips that unpickling would not notice."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(repr(key).encode())
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{type(value).__name__}:{value!r}".encode())


def save_state(path: PathLike, state: Dict[str, Any]) -> Path:
    """Atomically write ``state`` with the format version and a content checksum to ``path``."""
    payload = {"format_version": CHECKPOINT_FORMAT_VERSION, **state}
    payload["checksum"] = content_digest(payload)
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def load_state(path: PathLike, map_location: Union[str, torch.device] = "cpu",
               versions: Sequence[int] = (CHECKPOINT_FORMAT_VERSION,)) -> Dict[str, Any]:
    """Load a checkpoint written by ``save_state`` in one of the format ``versions``;
    any problem is one CheckpointError line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.is_dir()
                              else f"{path} is a folder; give the checkpoint file inside it")
    # torch.save writes a zip (since torch 1.6); other bytes would reach torch's legacy unpickler, whose
    # errors on text or random bytes are KeyError, IndexError, ... and advice to load them unsafely
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint (not a torch zip file)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects that are not plain tensors or numbers and was not "
            f"loaded ({_what_was_refused(err)}); only load checkpoints written by this project"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError, TypeError,
            AttributeError) as err:  # a zip whose pickle is malformed
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({reason})") from None
    state = check_format(state, path, versions)
    stored = state.pop("checksum", None)
    if stored != content_digest(state):
        raise CheckpointError(f"checkpoint {path} is damaged (its content does not match its checksum)")
    return state


def _what_was_refused(err: pickle.UnpicklingError) -> str:
    """The object torch's safe loader refused, without torch's advice to load the file unsafely."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return f"it names {found.group(1)}" if found else "unsafe content"


def check_format(state: Any, path: PathLike, versions: Sequence[int] = (CHECKPOINT_FORMAT_VERSION,)
                 ) -> Dict[str, Any]:
    """Refuse foreign files and other format versions with a message that says what to do."""
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no format version)")
    version = state["format_version"]
    if version not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise FormatVersionError(
            f"checkpoint {path} has format version {version}, this version of lstm-sentiment reads "
            f"version {readable} here; use the matching release or train again"
        )
    return state


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold the bytes of ``source`` (a hard link when possible), atomically."""
    temporary = target.with_name(f".{target.name}.link.tmp")
    if temporary.exists():
        temporary.unlink()
    try:
        os.link(source, temporary)
    except OSError:
        with open(source, "rb") as src, atomic_write(temporary, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.replace(temporary, target)
