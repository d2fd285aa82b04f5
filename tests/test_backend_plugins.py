"""Backends as plugins: a third party's package declares a backend through the
`songbatch.backends` entry points, and a profile's `executor:` (or `render --backend`) names
it; the built-ins `local` and `ray` register the same way. A backend is a transport
(executors/transport.py): songbatch's coordinator keeps the ledger whatever runs the workers.

The `threads` backend is such a plugin (tests/plugins/songbatch_threads, put on the path by
conftest.py): its workers are threads of this process, so a run with it is fast and the test
sees its spawns."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from helpers.books import book_manifest
from helpers.examples import REPO, example_book, invoke, render_offline
from helpers.verify import verify_done_exactly_once
from songbatch.errors import InputError
from songbatch.executors import builtin as builtin_backends
from songbatch.executors.registry import (
    BACKENDS,
    BUILTIN_BACKENDS,
    GROUP,
    backend_registry,
    known_backends,
)
from songbatch.ledger import Ledger
from songbatch.profiles import load_profile


def chunks(workspace: Path) -> dict[str, str]:
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute("SELECT key, sha256 FROM jobs WHERE state = 'done'")
        return {key: sha for key, sha in rows}


def workers(workspace: Path) -> set[str]:
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        rows = ledger.conn.execute("SELECT worker FROM attempts WHERE outcome = 'done'")
        return {worker for (worker,) in rows}


def offline_profile(folder: Path, extra: str) -> Path:
    """The shipped offline profile with `extra` (YAML lines) after it, in `folder`."""
    shipped = (REPO / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    path = folder / "plugged.yaml"
    path.write_text(shipped + extra, encoding="utf-8")
    return path


def test_the_built_ins_register_through_pyproject_as_the_registry_loads_them() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"][GROUP] == BUILTIN_BACKENDS
    for name, value in BUILTIN_BACKENDS.items():
        point = importlib.metadata.EntryPoint(name, value, GROUP)
        assert backend_registry().entries[name] is point.load()
    assert backend_registry().entries["ray"] is builtin_backends.RAY
    stale = BACKENDS.discover([])  # a checkout run with PYTHONPATH=src: the built-ins still
    assert sorted(stale.entries) == ["local", "ray"] and not stale.builtins_registered


def test_the_threads_backend_is_a_plugin_found_through_its_entry_point(tmp_path: Path) -> None:
    registry = backend_registry()
    assert registry.origins["threads"].distribution == "songbatch-test-plugins 0.0.0"
    assert registry.plugins() == ["threads"]
    assert known_backends() == ["local", "ray", "threads"]
    result = invoke("doctor", "--profile", "offline", "--workspace", str(tmp_path), "--json")
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    # (and, from an install older than this pyproject, that its own entry points are missing)
    assert checks["backends"]["detail"].startswith(
        "built-in: local, ray; plugins: threads (songbatch-test-plugins 0.0.0)"
    )


def test_a_profile_naming_a_plugin_backend_renders_the_book_as_the_local_pool_does(
    tmp_path: Path,
) -> None:
    from songbatch_threads.transport import SPAWNED

    here, there = tmp_path / "local", tmp_path / "threads"
    render_offline(here, example_book(here, formats="[flac]"))
    there.mkdir()
    profile = offline_profile(there, "executor: threads\n")
    book = example_book(there, formats="[flac]")
    SPAWNED.clear()
    result = invoke("render", str(book), "--workspace", str(there), "--profile", str(profile))
    assert result.exit_code == 0, result.output
    assert SPAWNED == ["cpu0", "cpu1"]  # the profile's devices: cpu:2, a thread each
    # The same chunk files, byte for byte, published by the same coordinator.
    assert chunks(there) == chunks(here) and chunks(here)
    assert workers(there) <= {"cpu0", "cpu1"}
    verify_done_exactly_once(there)
    ours = sorted(p.relative_to(here / "outputs") for p in (here / "outputs").rglob("*.flac"))
    theirs = sorted(p.relative_to(there / "outputs") for p in (there / "outputs").rglob("*.flac"))
    assert ours == theirs and ours


def test_render_backend_takes_any_registered_name(tmp_path: Path) -> None:
    from songbatch_threads.transport import SPAWNED

    book = book_manifest(tmp_path, chapters=1, sentences=2, formats="[flac]")
    SPAWNED.clear()
    result = invoke(
        "render", str(book), "--workspace", str(tmp_path), "--profile", "offline",
        "--backend", "threads", "--devices", "cpu:1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert SPAWNED == ["cpu0"]
    refused = invoke("render", str(book), "--workspace", str(tmp_path), "--backend", "nope")
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "songbatch: error: --backend 'nope': expected local or ray, or a plugin's: threads"
    )


def test_an_unknown_executor_is_one_line_naming_file_line_and_field(tmp_path: Path) -> None:
    profile = offline_profile(tmp_path, "executor: kubernetes\n")
    line = len(profile.read_text(encoding="utf-8").splitlines())
    book = example_book(tmp_path, formats="[flac]")
    result = invoke("render", str(book), "--workspace", str(tmp_path), "--profile", str(profile))
    assert result.exit_code == 2, result.output
    [said] = result.output.strip().splitlines()
    assert f"{profile}:{line}" in said, said
    assert "executor" in said, said
    assert "'kubernetes': expected local or ray, or a plugin's: threads" in said, said
    assert not (tmp_path / ".songbatch" / "ledger.db").exists()


def test_a_backend_plugin_that_does_not_load_is_named_and_the_others_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    info = site / "broken_backend-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-backend\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\nslurm = broken_backend:BACKEND\nlocal = broken_backend:BACKEND\n",
        encoding="utf-8",
    )
    (site / "broken_backend.py").write_text("import no_such_cluster_client\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    BACKENDS.clear()
    try:
        registry = backend_registry()
        assert registry.broken["slurm"].reason == (
            "entry point 'slurm = broken_backend:BACKEND' of broken-backend 1.0 does not load:"
            " ModuleNotFoundError: No module named 'no_such_cluster_client'"
        )
        assert [problem.name for problem in registry.ignored] == ["local"]
        assert registry.entries["local"] is builtin_backends.LOCAL
        profile = offline_profile(tmp_path, "executor: slurm\n")
        book = example_book(tmp_path, formats="[flac]")
        result = invoke(
            "render", str(book), "--workspace", str(tmp_path), "--profile", str(profile)
        )
        assert result.exit_code == 2, result.output
        [said] = result.output.strip().splitlines()
        assert "backend 'slurm' is unavailable" in said and "broken-backend 1.0" in said, said
        assert load_profile(offline_profile(tmp_path, "executor: threads\n")).executor == "threads"
    finally:
        monkeypatch.undo()
        BACKENDS.clear()


def test_doctor_fails_a_chosen_backend_whose_packages_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import songbatch.executors.ray_backend as ray_backend

    def missing() -> None:
        raise InputError(ray_backend.MISSING)

    monkeypatch.setattr(ray_backend, "check_ray_installed", missing)
    profile = offline_profile(tmp_path, "executor: ray\n")
    result = invoke("doctor", "--profile", str(profile), "--workspace", str(tmp_path), "--json")
    checks = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["backend ray"]["state"] == "fail", checks
    assert "songbatch[ray] is not installed" in checks["backend ray"]["fix"]
    assert result.exit_code != 0
