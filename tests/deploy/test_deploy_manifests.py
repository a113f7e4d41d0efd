"""The Kubernetes manifests as `kubectl apply -k` would send them: rendered by kustomize,
validated against the Kubernetes API schemas (kubernetes-validate ships them, offline),
the KEDA ScaledObject (a CRD, no schema there) checked by hand, and the cross-references
between objects (selectors, ports, config refs) checked for both overlays.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from app.queue.keys import Keys

from .deploy_support import by_kind, config_data, parse_dockerfile, pod_specs

# The oldest release we claim (the api's preStop `sleep` action is on by default from
# 1.30) and the newest the package knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CRD_KINDS = {"ScaledObject"}
Docs = dict[str, list[dict[str, Any]]]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_every_manifest_matches_the_kubernetes_schema(rendered: Docs, overlay: str, version: str) -> None:
    checked = 0
    for doc in rendered[overlay]:
        if doc["kind"] in CRD_KINDS:
            continue
        # strict: unknown fields (a typo like `readinesProbe`) are errors, not ignored.
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 8


def test_the_schema_check_is_not_vacuous(rendered: Docs) -> None:
    api = copy.deepcopy(by_kind(rendered["base"], "Deployment")["bark-api"])
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(api, K8S_VERSIONS[-1], strict=True)


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_selectors_ports_and_config_refs_resolve(rendered: Docs, overlay: str) -> None:
    docs = rendered[overlay]
    pods = pod_specs(docs)
    pod_labels = [p["metadata"]["labels"] for p in pods.values()]

    for workload in docs:
        if workload["kind"] in ("Deployment", "StatefulSet"):
            selector = workload["spec"]["selector"]["matchLabels"]
            assert _labels_match(selector, workload["spec"]["template"]["metadata"]["labels"])

    for svc in by_kind(docs, "Service").values():
        selector = svc["spec"]["selector"]
        targets = [p for p in pods.values() if _labels_match(selector, p["metadata"]["labels"])]
        assert targets, f"Service {svc['metadata']['name']} selects no pod"
        named_ports = {
            port["name"] for p in targets for c in p["spec"]["containers"] for port in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in named_ports, (svc["metadata"]["name"], port)

    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(_labels_match(selector, labels) for labels in pod_labels), pdb["metadata"]["name"]

    # envFrom names were rewritten by kustomize to the generated (hash-suffixed) names.
    existing = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name, pod in pods.items():
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for ref in c.get("envFrom", []):
                kind, target = (
                    ("ConfigMap", ref["configMapRef"]["name"])
                    if "configMapRef" in ref
                    else ("Secret", ref["secretRef"]["name"])
                )
                assert (kind, target) in existing, (name, kind, target)


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_api_has_probes_on_its_port_and_a_pdb(rendered: Docs, overlay: str) -> None:
    docs = rendered[overlay]
    config = config_data(docs, "bark-config")
    api = by_kind(docs, "Deployment")["bark-api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(config["BARK_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["spec"]["replicas"] >= 2
    assert by_kind(docs, "PodDisruptionBudget")["bark-api"]["spec"]["minAvailable"] >= 1
    assert config["BARK_HOST"] == "0.0.0.0"  # reachable from the Service, not only loopback


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_worker_drains_for_longer_than_the_longest_job(rendered: Docs, overlay: str) -> None:
    docs = rendered[overlay]
    config = config_data(docs, "bark-config")
    pod = by_kind(docs, "Deployment")["bark-worker"]["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "worker")
    longest_job_s = float(config["BARK_REQUEST_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > longest_job_s
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    assert "kill -TERM 1" in drain[-1]  # tini (PID 1) forwards it to bark-worker
    assert by_kind(docs, "PodDisruptionBudget")["bark-worker"]["spec"]["maxUnavailable"] == 1


def test_gpu_overlay_gives_each_worker_one_gpu_and_leaves_replicas_to_keda(rendered: Docs) -> None:
    docs = rendered["gpu"]
    worker = by_kind(docs, "Deployment")["bark-worker"]
    container = next(c for c in worker["spec"]["template"]["spec"]["containers"] if c["name"] == "worker")
    # Extended resources must be in limits (requests, if given, equal to them).
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "replicas" not in worker["spec"]
    config = config_data(docs, "bark-config")
    assert config["BARK_DEVICE"] == "cuda"
    assert config["BARK_DTYPE"] in ("auto", "float16", "bfloat16")  # never float32 on a GPU by default
    # The base stays deployable on CPU nodes.
    base_worker = by_kind(rendered["base"], "Deployment")["bark-worker"]
    base_container = base_worker["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in str(base_container["resources"])


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_redis_is_a_statefulset_with_aof_behind_the_configured_url(rendered: Docs, overlay: str) -> None:
    docs = rendered[overlay]
    redis = by_kind(docs, "StatefulSet")["bark-redis"]
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"]
    url = urlsplit(config_data(docs, "bark-config")["BARK_REDIS_URL"])
    service = by_kind(docs, "Service")[url.hostname or ""]
    assert url.port in [p["port"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_bark_pods_run_the_one_image_as_its_non_root_user(rendered: Docs, overlay: str) -> None:
    runtime = parse_dockerfile()[-1]
    uid = int(runtime.all("USER")[-1].split(":")[0])
    images = set()
    for name, pod in pod_specs(rendered[overlay]).items():
        if name == "bark-redis":
            continue
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] == uid
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            images.add(c["image"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert len(images) == 1, images


# --- KEDA: a CRD, so a hand-written structural check of what its schema would enforce ------

SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
REDIS_STREAMS_METADATA = {
    "address",
    "addressFromEnv",
    "host",
    "hostFromEnv",
    "port",
    "portFromEnv",
    "usernameFromEnv",
    "passwordFromEnv",
    "stream",
    "consumerGroup",
    "pendingEntriesCount",
    "streamLength",
    "lagCount",
    "activationLagCount",
    "enableTLS",
    "unsafeSsl",
    "databaseIndex",
}


def test_keda_scaled_object_scales_workers_on_the_job_stream(rendered: Docs) -> None:
    docs = rendered["gpu"]
    (scaled,) = by_kind(docs, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
    target = spec["scaleTargetRef"]["name"]
    assert target in by_kind(docs, "Deployment") and target == "bark-worker"
    for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        assert isinstance(spec[key], int), key
    # >= 1: the API is only Ready with a loaded worker, and streamLength cannot wake from 0.
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]

    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis-streams"
    meta = trigger["metadata"]
    assert set(meta) <= REDIS_STREAMS_METADATA, set(meta) - REDIS_STREAMS_METADATA
    # The CRD types metadata as map[string]string: an unquoted number is rejected.
    assert all(isinstance(v, str) for v in meta.values()), meta

    config = config_data(docs, "bark-config")
    assert meta["stream"] == Keys(config["BARK_REDIS_PREFIX"]).jobs
    # XLEN (outstanding jobs): no consumerGroup, which would switch KEDA to XPENDING.
    assert "consumerGroup" not in meta and "streamLength" in meta
    assert int(meta["streamLength"]) == int(config["BARK_BATCH_SIZE"])

    # The operator runs in KEDA's namespace: the address must be the Service's full name.
    url = urlsplit(config["BARK_REDIS_URL"])
    namespace = scaled["metadata"]["namespace"]
    host, port = meta["address"].rsplit(":", 1)
    assert host == f"{url.hostname}.{namespace}.svc.cluster.local"
    assert int(port) == url.port
    assert meta["databaseIndex"] == (url.path.strip("/") or "0")
