"""What a remote run needs before anything is planned, checked without importing the client
(httpx comes with the `replicate` extra) and without a network call."""

from __future__ import annotations

import importlib.util
import os

from songbatch.errors import EngineUnavailable, install_hint


def check_client() -> None:
    """Before anything is planned, and without a network call: the `replicate` package is
    installed and a token is set (its value is checked by the API's first answer)."""
    if importlib.util.find_spec("replicate") is None:
        raise EngineUnavailable(
            f"the replicate engine needs the 'replicate' package: {install_hint('replicate')}"
        )
    if not os.environ.get("REPLICATE_API_TOKEN", "").strip():
        raise EngineUnavailable(
            "REPLICATE_API_TOKEN is not set: the replicate profile needs an API token"
            " (export REPLICATE_API_TOKEN=r8_...; https://replicate.com/account/api-tokens)"
        )
