"""The multi-machine deployment files, checked offline: every Kubernetes manifest against
the API's schemas (kubernetes-validate bundles them), the Compose file against the Compose
specification's schema (check-jsonschema bundles it), and what the files must agree on:
the names they refer to, the folders the invoker shares with function containers, the
controllers behind the load balancer."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lorafaas.settings import SETTINGS_TABLE

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
KUBERNETES_VERSION = "1.33.0"  # the oldest minor release still maintained upstream
SHARED = {"LORAFAAS_RUN_DIR": SETTINGS_TABLE["run_dir"].default,
          "LORAFAAS_SHM_DIR": SETTINGS_TABLE["shm_dir"].default}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every object of every manifest, with the file it came from."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


def objects(kind: str) -> list[dict[str, Any]]:
    """The manifests' objects of one kind."""
    return [o for _, o in manifests() if o["kind"] == kind]


def pod_spec(kind: str) -> dict[str, Any]:
    """The pod template of the one workload of that kind."""
    (workload,) = objects(kind)
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as check-jsonschema vendors it."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def compose() -> dict[str, Any]:
    """The Compose file."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_the_folder_holds_the_workloads_and_their_configuration() -> None:
    kinds = sorted(o["kind"] for _, o in manifests())
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "Namespace", "Secret", "Service"]


@pytest.mark.parametrize("name,manifest", manifests(),
                         ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_each_manifest_is_valid_against_the_kubernetes_schema(
        name: str, manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_validation_catches_a_wrong_field() -> None:
    (daemonset,) = objects("DaemonSet")
    broken = copy.deepcopy(daemonset)
    broken["spec"]["template"]["spec"]["nodeSelectr"] = {"gpu": "true"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(daemonset)
    broken["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["type"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_object_lives_in_the_namespace_the_folder_creates() -> None:
    (namespace,) = objects("Namespace")
    for _, manifest in manifests():
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_the_workloads_read_the_secret_and_configmap_the_folder_defines() -> None:
    (secret,), (config,) = objects("Secret"), objects("ConfigMap")
    assert set(secret["stringData"]) == {"LORAFAAS_DATABASE_URL", "LORAFAAS_BROKER_URL"}
    assert secret["stringData"]["LORAFAAS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert secret["stringData"]["LORAFAAS_BROKER_URL"].startswith("nats://")
    assert set(config["data"]) <= {spec.env for spec in SETTINGS_TABLE.values()}
    for kind in ("Deployment", "DaemonSet"):
        (container,) = pod_spec(kind)["containers"]
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {secret["metadata"]["name"], config["metadata"]["name"]}


def test_the_service_selects_the_controllers() -> None:
    (deployment,), (service,) = objects("Deployment"), objects("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2
    (container,) = pod_spec("Deployment")["containers"]
    assert container["args"] == ["serve", "--role", "controller"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_invokers_run_on_accelerator_nodes_with_the_engine_and_shared_folders() -> None:
    spec = pod_spec("DaemonSet")
    assert spec["nodeSelector"] and spec["tolerations"]
    (container,) = spec["containers"]
    assert container["args"] == ["serve", "--role", "invoker"]
    assert {"name": "LORAFAAS_INVOKER_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in container["env"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    mounted = {m["mountPath"]: host_paths[m["name"]] for m in container["volumeMounts"]}
    assert mounted["/var/run/docker.sock"] == "/var/run/docker.sock"
    (config,) = objects("ConfigMap")
    for key, default in SHARED.items():
        # The engine resolves function containers' bind mounts on the node: same path.
        assert config["data"][key] == default
        assert mounted[default] == default


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema.validate(compose(), compose_schema())


def test_the_compose_validation_catches_a_wrong_field() -> None:
    broken = compose()
    broken["services"]["invoker"]["volumez"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_the_compose_invoker_shares_the_engine_and_folders_at_their_host_paths() -> None:
    invoker = compose()["services"]["invoker"]
    assert invoker["command"] == ["serve", "--role", "invoker"]
    # Short syntax: SOURCE:TARGET[:MODE]; target -> source.
    binds = {v.split(":")[1]: v.split(":")[0] for v in invoker["volumes"]}
    assert binds["/var/run/docker.sock"] == "/var/run/docker.sock"
    for key, default in SHARED.items():
        assert invoker["environment"][key] == default
        assert binds[default] == default


def test_the_load_balancer_fronts_every_compose_controller() -> None:
    services = compose()["services"]
    controllers = {n for n, s in services.items() if s.get("command", [])[-1:] == ["controller"]}
    assert len(controllers) == 2
    nginx = (COMPOSE.parent / "nginx.conf").read_text()
    assert set(re.findall(r"server (\S+):3233", nginx)) == controllers
    for name in controllers:
        assert set(services[name]["depends_on"]) == {"postgres", "nats"}
        assert services[name]["environment"]["LORAFAAS_DATABASE_URL"].startswith(
            "postgresql+psycopg://")
    assert "--jetstream" in services["nats"]["command"]
