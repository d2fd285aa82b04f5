"""docs/cluster.md and the files it ships under deploy/ray/ stay true to each other: the Ray
profile loads through songbatch's own loader with the values the page explains; the KubeRay
RayCluster and the cluster launcher config hold the fields the page relies on, one Ray version
throughout; every relative link of the page points at a file (and heading) that exists. Fast:
no Ray is started or imported."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from songbatch.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cluster.md"
DEPLOY = REPO / "deploy" / "ray"


def load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


def raycluster() -> dict[str, Any]:
    doc = load("raycluster.yaml")
    assert isinstance(doc, dict)
    return doc


def launcher() -> dict[str, Any]:
    doc = load("cluster-launcher.yaml")
    assert isinstance(doc, dict)
    return doc


def gpu_group(cluster: dict[str, Any]) -> dict[str, Any]:
    groups = [g for g in cluster["spec"]["workerGroupSpecs"] if gpu_limit(g) is not None]
    assert len(groups) == 1, "one GPU worker group"
    return groups[0]


def gpu_limit(group: dict[str, Any]) -> str | None:
    [container] = group["template"]["spec"]["containers"]
    value = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    return None if value is None else str(value)


def gpu_node_type(config: dict[str, Any]) -> dict[str, Any]:
    types = [t for t in config["available_node_types"].values() if t["resources"].get("GPU")]
    assert len(types) == 1, "one GPU node type"
    return types[0]


def containers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    spec = cluster["spec"]
    pods = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    return [c for pod in pods for c in pod["template"]["spec"]["containers"]]


# ---------------------------------------------------------------- the profile


def test_the_ray_profile_loads_through_songbatch_with_the_documented_values() -> None:
    profile = load_profile(DEPLOY / "songbatch-ray.yaml")
    assert profile.executor == "ray"
    assert profile.ray is not None
    assert profile.ray.address == "ray://127.0.0.1:10001"  # the forwarded client port
    assert profile.ray.device == "gpu"
    assert profile.ray.actors == 8
    assert profile.ray.num_cpus_per_actor == 1
    # Its engines are the shipped local profile's, unchanged.
    local = load_profile(REPO / "profiles" / "local.yaml")
    assert profile.speech == local.speech and profile.music == local.music


def test_the_profile_asks_for_no_more_actors_than_either_cluster_can_hold() -> None:
    # An actor past the caps never renders: a node asked for and never given (docs/cluster.md).
    ray = load_profile(DEPLOY / "songbatch-ray.yaml").ray
    assert ray is not None and ray.actors is not None
    actors = ray.actors
    group = gpu_group(raycluster())
    assert actors <= group["maxReplicas"] * int(gpu_limit(group) or 0)
    config = launcher()
    node = gpu_node_type(config)
    assert actors <= min(node["max_workers"], config["max_workers"]) * node["resources"]["GPU"]


# ---------------------------------------------------------------- KubeRay


def test_the_raycluster_autoscales_a_gpu_group_from_zero() -> None:
    cluster = raycluster()
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["kind"] == "RayCluster"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert options["upscalingMode"] in {"Default", "Aggressive", "Conservative"}
    assert isinstance(options["idleTimeoutSeconds"], int)
    group = gpu_group(cluster)
    assert group["minReplicas"] == 0 and group["replicas"] == 0
    assert group["maxReplicas"] >= 1
    assert gpu_limit(group) == "1"  # one GPU per pod: one actor per pod
    assert group["groupName"]
    for worker in spec["workerGroupSpecs"]:
        assert worker["minReplicas"] <= worker["maxReplicas"]


def test_the_head_has_no_gpu_no_actors_and_a_client_port() -> None:
    head = raycluster()["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    [container] = head["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["client"] == 10001


def test_ray_start_params_are_strings_as_the_crd_wants() -> None:
    spec = raycluster()["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), params


def test_the_head_service_the_page_names_is_the_one_kuberay_makes() -> None:
    # KubeRay names a RayCluster's head service <name>-head-svc.
    service = f"{raycluster()['metadata']['name']}-head-svc"
    text = DOC.read_text(encoding="utf-8")
    assert f"service/{service} 10001:10001" in text
    assert f"ray://{service}:10001" in text


# ---------------------------------------------------------------- the cluster launcher


def test_the_launcher_caps_gpu_workers_and_starts_them_from_zero() -> None:
    config = launcher()
    assert isinstance(config["max_workers"], int) and config["max_workers"] >= 1
    assert config["head_node_type"] in config["available_node_types"]
    node = gpu_node_type(config)
    assert node["resources"]["GPU"] == 1
    assert node["min_workers"] == 0
    assert 1 <= node["max_workers"] <= config["max_workers"]
    assert "InstanceType" in node["node_config"]
    head = config["available_node_types"][config["head_node_type"]]
    assert not head["resources"].get("GPU")
    assert isinstance(config["idle_timeout_minutes"], int | float)


def test_the_launcher_config_is_valid_against_rays_own_schema() -> None:
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    jsonschema = pytest.importorskip("jsonschema")
    # Read beside the package, not imported: importing ray is slow.
    path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(launcher(), schema)


# ---------------------------------------------------------------- one Ray version


def test_one_ray_version_everywhere() -> None:
    cluster = raycluster()
    version = cluster["spec"]["rayVersion"]
    assert re.fullmatch(r"2\.\d+\.\d+", version)
    # The image built from docs/cluster.md, named by the Ray it is built on.
    for container in containers(cluster):
        assert f"ray{version}-py311-gpu" in container["image"], container["image"]
    config = launcher()
    assert config["docker"]["image"] == f"rayproject/ray:{version}-py311-gpu"
    pin = f"ray[client]=={version}"
    assert any(pin in command for command in config["setup_commands"])
    text = DOC.read_text(encoding="utf-8")
    assert f"FROM rayproject/ray:{version}-py311-gpu" in text
    assert f"pip install '.[local,chatterbox,ray]' '{pin}'" in text


# ---------------------------------------------------------------- links


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in markdown.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(slug.replace(" ", "-"))
    return found


def test_every_relative_link_of_the_page_points_at_what_exists() -> None:
    links = LINK.findall(DOC.read_text(encoding="utf-8"))
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "the page links the files it explains"
    for link in relative:
        target, _, fragment = link.partition("#")
        path = (DOC.parent / target).resolve() if target else DOC
        assert path.exists(), f"docs/cluster.md links {link}: no such file"
        if fragment and path.suffix == ".md":
            assert fragment in anchors(path), f"docs/cluster.md links {link}: no such heading"
