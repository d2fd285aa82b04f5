"""A Hugging Face cache laid out as the hub client leaves it, so that offline loads of a repo id
(`from_pretrained("facebook/musicgen-small")`, chatterbox's `hf_hub_download`) find a tiny
checkpoint a test wrote there, through the same code that finds real downloaded weights."""

from __future__ import annotations

from pathlib import Path

REVISION = "0" * 40  # any commit name: offline, the client follows refs/main to it


def hub_snapshot(hf_home: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in `$HF_HOME/hub`, created empty with refs/main pointing
    at it; write the checkpoint's files into it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def offline_hub_env(hf_home: Path) -> dict[str, str]:
    """Environment for a subprocess that must load from this cache and never from the network."""
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
