"""deploy/kubernetes agrees with the agent's configuration keys (issue #17).

The manifests are JSON documents (valid YAML, so ``kubectl``/``kustomize`` take them as they are),
which lets this test read them with the standard library instead of adding PyYAML. Checked: the
ConfigMap's ``agent.toml`` is a valid configuration (with the pod's environment: the example
Secret's value, ``SIEM_AGENT_SHARD__COUNT``); the shard count equals the StatefulSet's replicas and
``shard.index`` is ``"auto"``;
the ops port of the config is the container port the probes, the Service and the scrape annotation
use; liveness is ``/healthz`` and readiness ``/readyz``; the state volume is mounted at ``state_dir``
and the config at the path ``args`` name; the Secret key the env var reads exists; PDB, Service and
StatefulSet select the pod's labels; the kustomizations list files that exist. Not verified here (no
cluster): that an API server accepts them, that the storage class offers ReadWriteMany with working
POSIX locks, and the rollout itself.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((K8S / name).read_text())
    return data


@pytest.fixture
def parts() -> dict[str, dict[str, Any]]:
    return {p.name: doc(p.name) for p in K8S.glob("*.yaml")}


def test_config_is_valid_and_matches_the_statefulset(
    parts: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sts = parts["statefulset.yaml"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret = parts["secret.example.yaml"]
    count, env = container["env"]
    assert count["name"] == "SIEM_AGENT_SHARD__COUNT" and count["value"] == str(sts["spec"]["replicas"])
    monkeypatch.setenv(count["name"], count["value"])
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    monkeypatch.setenv(env["name"], secret["stringData"][ref["key"]])
    toml = parts["configmap.yaml"]["data"]["agent.toml"]
    raw = tomllib.loads(toml)
    assert all(s["client_secret"] == {"env": env["name"]} for s in raw["sources"])
    assert "count" not in raw["shard"], "the shard count is set once, next to replicas"
    settings = load_settings(data=raw)  # with the pod's environment

    assert settings.shard.count == sts["spec"]["replicas"] and settings.shard.index == "auto"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == parts["service.yaml"]["metadata"]["name"]
    assert settings.http.address == "0.0.0.0"
    (port,) = container["ports"]
    assert port["containerPort"] == settings.http.port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.http.port)
    assert parts["service.yaml"]["spec"]["ports"][0]["targetPort"] == port["name"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout_secs

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert Path(mounts["state"]) == settings.state_dir
    assert container["args"] == ["run", "--config", f"{mounts['config']}/agent.toml"]
    assert volumes["config"]["configMap"]["name"] == parts["configmap.yaml"]["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    pvc = parts["pvc-shared.yaml"]
    assert claim == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert (
        pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10001
    )  # the image's user


def test_selectors_match_the_pods(parts: dict[str, dict[str, Any]]) -> None:
    labels = parts["statefulset.yaml"]["spec"]["template"]["metadata"]["labels"]
    assert parts["statefulset.yaml"]["spec"]["selector"]["matchLabels"] == labels
    assert parts["pdb.yaml"]["spec"]["selector"]["matchLabels"] == labels
    assert parts["pdb.yaml"]["spec"]["maxUnavailable"] == 1
    assert parts["service.yaml"]["spec"]["selector"] == labels
    assert parts["service.yaml"]["spec"]["clusterIP"] == "None"  # the StatefulSet's governing service


def test_resources_are_sized_from_the_benchmark(parts: dict[str, dict[str, Any]]) -> None:
    """BENCHMARKS.md (Many tenants): ~120 MiB RSS at 1,000 tenants in one process, ~70 MiB at one.
    The request covers a replica's steady state, the limit a full rebalance onto one pod."""
    (container,) = parts["statefulset.yaml"]["spec"]["template"]["spec"]["containers"]
    res = container["resources"]
    assert res["requests"]["memory"] == "160Mi" and res["limits"]["memory"] == "384Mi"


def test_kustomizations_list_existing_files() -> None:
    for kust in (K8S / "kustomization.yaml", K8S / "per-pod-volumes" / "kustomization.yaml"):
        k = json.loads(kust.read_text())
        for res in k.get("resources", []):
            assert (kust.parent / res).exists(), (kust, res)
        for patch in k.get("patches", []):
            assert (kust.parent / patch["path"]).exists(), (kust, patch)
    base = json.loads((K8S / "kustomization.yaml").read_text())["resources"]
    assert "secret.example.yaml" not in base, "the example Secret must not be applied by default"
    per_pod = doc("per-pod-volumes/statefulset-patch.yaml")["spec"]["volumeClaimTemplates"][0]
    assert per_pod["metadata"]["name"] == "state" and per_pod["spec"]["accessModes"] == ["ReadWriteOnce"]
