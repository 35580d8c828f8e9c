"""docker/k8s: every manifest is valid for real Kubernetes versions (strict schemas, shipped in the
kubernetes-validate wheel), and the manifests agree with each other, with the image and with the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from augserve.settings import Settings
from deploy_files import K8S_DIR, env, final_stage, settings_env_names, yaml_documents

# The oldest release the manifests are written for (every API they use is GA there) and a recent one.
K8S_VERSIONS = ("1.30.0", "1.34.0")
MANIFESTS = sorted(path for path in K8S_DIR.glob("*.yaml") if path.name != "kustomization.yaml")
UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def resources() -> dict[str, dict[str, Any]]:
    """Each manifest's single resource by kind."""
    found = {}
    for path in MANIFESTS:
        (document,) = yaml_documents(path)
        found[document["kind"]] = document
    return found


def quantity(value: str) -> int:
    for suffix, scale in UNITS.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * scale
    return int(value)


def container() -> dict[str, Any]:
    (only,) = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid(path: Path, version: str) -> None:
    for document in yaml_documents(path):
        kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    deployment = resources()["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = yaml_documents(K8S_DIR / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]
    assert [image["name"] for image in kustomization["images"]] == [container()["image"].split(":")[0]]


def test_probes() -> None:
    probes = {
        kind: container()[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert {probe["port"] for probe in probes.values()} == {"http"}
    assert ports["http"] == int(env(final_stage())["AUGSERVE_PORT"])


def test_shared_store_on_a_read_write_many_claim() -> None:
    found = resources()
    claim = found["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in found["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container()["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    data_dir = env(final_stage())["AUGSERVE_DATA_DIR"]
    assert mount["mountPath"] == found["ConfigMap"]["data"]["AUGSERVE_DATA_DIR"] == data_dir


def test_autoscaler_and_service_target_the_deployment() -> None:
    found = resources()
    deployment = found["Deployment"]
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    (metric,) = found["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (found["Service"]["spec"]["selector"], found["PodDisruptionBudget"]["spec"]["selector"]):
        labels = selector.get("matchLabels", selector)
        assert labels.items() <= pod_labels.items()
    assert found["Service"]["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container()["ports"]}


def test_runs_as_the_image_user_without_privileges() -> None:
    pod = resources()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    (user,) = [i.args for i in final_stage() if i.keyword == "USER"]
    assert pod["runAsNonRoot"] is True
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_settings_come_from_real_names() -> None:
    names = settings_env_names()
    config = resources()["ConfigMap"]["data"]
    assert set(config) <= names, set(config) - names
    env_vars = {item["name"]: item.get("value") for item in container()["env"]}
    assert env_vars["NO_ALBUMENTATIONS_UPDATE"] == "1"
    assert set(env_vars) - {"NO_ALBUMENTATIONS_UPDATE"} <= names
    assert container()["envFrom"] == [
        {"configMapRef": {"name": resources()["ConfigMap"]["metadata"]["name"]}}
    ]


def test_sizing_is_consistent() -> None:
    """Threads = CPUs of the pod; memory limit = cache for every worker process + 1 GiB working memory."""
    config = resources()["ConfigMap"]["data"]
    limits, requests = container()["resources"]["limits"], container()["resources"]["requests"]
    assert int(config["AUGSERVE_THREADS"]) == quantity(limits["cpu"]) == quantity(requests["cpu"])
    cache = int(config.get("AUGSERVE_CACHE_BYTES", Settings.model_fields["cache_bytes"].default))
    workers = int(config.get("AUGSERVE_WORKERS", "1"))
    assert quantity(limits["memory"]) >= cache * workers + (1 << 30)
    assert quantity(requests["memory"]) <= quantity(limits["memory"])
