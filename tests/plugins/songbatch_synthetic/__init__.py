"""A third-party engine plugin, as a package would ship one: the synthetic stand-in of the tests
and benchmarks (a tone whose length follows the text, after a fixed latency; engine.py).

This module is its light declaration, named by the entry point in
tests/plugins/songbatch_test_plugins-0.0.0.dist-info/entry_points.txt: the params models and
the `EngineEntry`, no numpy, no engine. tests/helpers/plugins.py puts tests/plugins on the path.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from songbatch.engines import EngineEntry
from songbatch.engines.params import EngineParams, SpeechParams, WholeNumber


class _SyntheticBase(EngineParams):
    """engine.py: the stand-in's knobs."""

    latency_ms: Annotated[float, Field(ge=0, le=3_600_000)] = 50
    load_ms: Annotated[float, Field(ge=0, le=3_600_000)] = 0  # the engine's load takes this
    chars_per_second: Annotated[float, Field(gt=0)] = 14.0
    fail_marker: str | None = None  # a job whose text contains it fails for good
    disk_full_while: str | None = None  # while this path exists, calls fail as a full disk
    # A call with a job whose text contains it fails as a GPU's device-side assert does.
    device_assert_marker: str | None = None
    auto_batch_limit: Annotated[WholeNumber, Field(ge=1, le=256)] = 1  # `batch_size: auto`
    # ... and what it reports after its first call, as MusicGen can once it measured a peak.
    auto_batch_limit_after: Annotated[WholeNumber, Field(ge=1, le=256)] | None = None
    # A socket each call first tells what it renders and waits on (tests that kill mid-render).
    announce: str | None = None

    # The stand-in reads every param from its profile.
    load_only = frozenset(
        {
            "latency_ms",
            "load_ms",
            "chars_per_second",
            "fail_marker",
            "disk_full_while",
            "device_assert_marker",
            "auto_batch_limit",
            "auto_batch_limit_after",
            "announce",
        }
    )


class SyntheticSpeechParams(_SyntheticBase, SpeechParams):
    pass


class SyntheticMusicParams(_SyntheticBase):
    pass


ENGINE = EngineEntry(
    "songbatch_synthetic.engine",
    params={"speech": SyntheticSpeechParams, "music": SyntheticMusicParams},
)
