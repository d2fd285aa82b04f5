"""Which files each local model's checkpoint needs, and where the Hugging Face cache keeps them.

Importable without torch or the engines' libraries: `songbatch doctor` runs in the coordinator,
which never imports torch, and reads these tables to say which weights are here. The engines
read the same tables when they check a checkpoint folder (engines/chatterbox.py), so the two
cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variant:
    name: str
    repo_id: str
    files: tuple[str, ...]  # what the library's from_local reads (conds.pt is optional)
    ignored: frozenset[str] = frozenset()  # generation params it does not support


# chatterbox-tts 0.1.7: the files each class's `from_local` opens.
CHATTERBOX_VARIANTS = {
    "english": Variant(
        "english",
        "ResembleAI/chatterbox",
        ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json"),
    ),
    # Turbo warns on (and ignores) CFG, min_p and exaggeration: they are not sent.
    "turbo": Variant(
        "turbo",
        "ResembleAI/chatterbox-turbo",
        ("ve.safetensors", "t3_turbo_v1.safetensors", "s3gen_meanflow.safetensors"),
        frozenset({"cfg_weight", "min_p", "exaggeration"}),
    ),
    # Multilingual reads its own grapheme tokenizer, not English's tokenizer.json, and the
    # Cangjie table its tokenizer writes Chinese with (without it Chinese is read wrongly).
    "multilingual": Variant(
        "multilingual",
        "ResembleAI/chatterbox",
        (
            "ve.pt",
            "t3_mtl23ls_v2.safetensors",
            "s3gen.pt",
            "grapheme_mtl_merged_expanded_v1.json",
            "Cangjie5_TC.json",
        ),
    ),
}

# A transformers MusicGen checkpoint (`from_pretrained` of the model and its processor): each
# entry is satisfied by any one of its alternatives (one file, or a sharded index).
MUSICGEN_FILES: tuple[tuple[str, ...], ...] = (
    ("config.json",),
    ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"),
    ("preprocessor_config.json",),
    ("tokenizer.json", "spiece.model"),
)


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub resolves it (HF_HUB_CACHE, else HF_HOME/hub, else
    ~/.cache/huggingface/hub), read from the environment so the hub need not be imported."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


def cached_snapshot(repo_id: str, cache: Path | None = None) -> Path | None:
    """The snapshot folder `refs/main` names for `repo_id` in the cache, as an offline load
    resolves it; else the newest snapshot there; None when the repo was never downloaded."""
    repo = (cache or hub_cache_dir()) / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    try:
        revision = (repo / "refs" / "main").read_text(encoding="ascii").strip()
    except OSError:
        revision = ""
    if revision and (snapshots / revision).is_dir():
        return snapshots / revision
    try:
        folders = [entry for entry in snapshots.iterdir() if entry.is_dir()]
    except OSError:
        return None
    return max(folders, key=lambda entry: entry.stat().st_mtime) if folders else None


def missing_files(folder: Path, needed: Sequence[Sequence[str]]) -> list[str]:
    """The entries of `needed` (alternatives each) with no file in `folder`, named as
    "a or b"."""
    return [
        " or ".join(choices)
        for choices in needed
        if not any((folder / name).is_file() for name in choices)
    ]
