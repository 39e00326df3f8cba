"""deploy/ as the real tools read it: kustomize renders every kustomization, the result passes
`kubernetes-validate --strict` for Kubernetes 1.29 (the first with native sidecars on by
default) and the newest it knows, the policy ConfigMap passes `warden check`, and the alert rules
pass `promtool test rules`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import run_warden_cli

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))
VALIDATE = str(Path(sys.executable).parent / "kubernetes-validate")
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
# Prometheus Operator and cert-manager kinds: kubernetes-validate has no schema for them (it warns);
# the PrometheusRule's rules are checked by promtool below.
CUSTOM_RESOURCES = ("PodMonitor", "PrometheusRule", "Certificate", "Issuer")


def kustomize(path):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is missing: scripts/ensure-test-deps"
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def validate(path, version):
    return subprocess.run([VALIDATE, "--strict", "-k", version, str(path)], capture_output=True, text=True)


def test_every_kustomization_is_found():
    names = {str(p.relative_to(DEPLOY)) for p in KUSTOMIZATIONS}
    assert {"base", "monitoring", "overlays/example", "webhook"} <= names


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(DEPLOY)))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_manifests_validate_strictly(kustomization, version, tmp_path):
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(kustomize(kustomization))
    result = validate(rendered, version)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered.read_text()) if d]
    builtin = [k for k in kinds if k not in CUSTOM_RESOURCES]
    assert passed == len(builtin) > 0, result.stdout


def test_strict_validation_catches_a_misspelled_field(tmp_path):
    """The control for the test above: --strict really rejects what Kubernetes would drop."""
    docs = list(yaml.safe_load_all(kustomize(DEPLOY / "base")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(deployment))
    assert validate(path, "1.29.0").returncode != 0


def sidecar_pod():
    docs = list(yaml.safe_load_all(kustomize(DEPLOY / "overlays/example")))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return docs, deployment["spec"]["template"]["spec"]


def test_warden_is_a_native_sidecar_with_a_live_policy_directory():
    docs, pod = sidecar_pod()
    [warden] = pod["initContainers"]
    assert warden["restartPolicy"] == "Always"
    policy_mount = next(m for m in warden["volumeMounts"] if m["name"] == "warden-policy")
    assert "subPath" not in policy_mount and policy_mount["readOnly"]
    assert warden["args"] == ["serve", "--config", policy_mount["mountPath"]]
    volume = next(v for v in pod["volumes"] if v["name"] == "warden-policy")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap"
                     and d["metadata"]["name"] == volume["configMap"]["name"])
    assert configmap["metadata"]["name"].startswith("warden-policy-")  # content-hashed name
    security = warden["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert warden[probe]["httpGet"]["port"] == "warden-admin"
    assert warden["resources"]["requests"]["memory"] and warden["resources"]["limits"]["memory"]
    assert warden["envFrom"] == [{"secretRef": {"name": "warden-provider-keys"}}]


def test_the_app_talks_to_warden_on_the_port_the_policy_listens_on(tmp_path):
    docs, pod = sidecar_pod()
    [app] = pod["containers"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    policies = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("warden-policy")]
    [policy_map] = policies
    [(name, text)] = policy_map["data"].items()
    listen = yaml.safe_load(text)["server"]["listen"]
    assert env["OPENAI_BASE_URL"] == f"http://{listen}/v1"
    assert env["ANTHROPIC_BASE_URL"] == f"http://{listen}"
    admin_port = int(yaml.safe_load(text)["server"]["admin"].rsplit(":", 1)[1])
    [warden] = pod["initContainers"]
    assert {"name": "warden-admin", "containerPort": admin_port} in warden["ports"]
    # The ConfigMap's policy is one `warden serve` accepts.
    (tmp_path / name).write_text(text)
    check = run_warden_cli("check", str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr


def test_alert_rules_pass_their_unit_tests(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/ensure-test-deps"
    rule = yaml.safe_load((DEPLOY / "monitoring/prometheusrule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(DEPLOY / "monitoring/tests/alerts.test.yaml", tmp_path)
    check = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    tests = (DEPLOY / "monitoring/tests/alerts.test.yaml").read_text()
    untested = [a for a in alerts if f"alertname: {a}\n" not in tests]
    assert not untested, f"alerts without a unit test: {untested}"


def test_the_webhook_serves_where_its_configuration_sends_the_api_server():
    docs = list(yaml.safe_load_all(kustomize(DEPLOY / "webhook")))
    by_kind = {d["kind"]: d for d in docs}
    service = by_kind["Service"]
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = dict(a.split("=", 1) for a in container["args"][1:])
    assert container["args"][0] == "webhook"
    mount = container["volumeMounts"][0]["mountPath"]
    assert args["--tls-cert"] == f"{mount}/tls.crt" and args["--tls-key"] == f"{mount}/tls.key"
    assert "subPath" not in container["volumeMounts"][0]  # renewed certificates must reach the files
    secret = pod["volumes"][0]["secret"]["secretName"]
    assert by_kind["Certificate"]["spec"]["secretName"] == secret
    port = int(args["--listen"].rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port
    for hook in by_kind["MutatingWebhookConfiguration"]["webhooks"]:
        target = hook["clientConfig"]["service"]
        assert (target["name"], target["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
        assert target["path"] == "/mutate" and target["port"] == service["spec"]["ports"][0]["port"]
        assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
        assert {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", "warden-system"]} in hook["namespaceSelector"]["matchExpressions"]
