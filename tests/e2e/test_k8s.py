"""`warden inject` on real manifests and `warden webhook` over real TLS, with what they produce
checked by `kubernetes-validate --strict` and patches applied by a standard JSON Patch library."""

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonpatch
import trustme
import yaml

from harness import WARDEN_BIN, free_port, run_warden_cli

FIXTURES = Path(__file__).parent / "fixtures"
VALIDATE = str(Path(sys.executable).parent / "kubernetes-validate")

POD_SPEC = """      containers:
        - name: app
          image: registry.example.com/app:1.0
          env:
            - {name: OPENAI_BASE_URL, value: "https://api.openai.com/v1"}
            - {name: ANSWER, value: "yes"}
      volumes:
        - name: creds
          secret: {secretName: creds, defaultMode: 0600}
"""


MANIFEST = f"""# The service in front of the agents (untouched by injection, comments and all).
apiVersion: v1
kind: Service
metadata:
  name: agents   # keep this comment
spec:
  selector: {{app: agents}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
{POD_SPEC}---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: store}}
spec:
  serviceName: store
  selector: {{matchLabels: {{app: store}}}}
  template:
    metadata:
      labels: {{app: store}}
    spec:
{POD_SPEC}---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: node-agent}}
spec:
  selector: {{matchLabels: {{app: node-agent}}}}
  template:
    metadata:
      labels: {{app: node-agent}}
    spec:
{POD_SPEC}---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: rs}}
spec:
  selector: {{matchLabels: {{app: rs}}}}
  template:
    metadata:
      labels: {{app: rs}}
    spec:
{POD_SPEC}---
apiVersion: batch/v1
kind: Job
metadata: {{name: once}}
spec:
  template:
    spec:
      restartPolicy: Never
{POD_SPEC}---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: nightly}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
{"".join("    " + line + chr(10) if line else chr(10) for line in POD_SPEC.splitlines())}---
apiVersion: v1
kind: Pod
metadata: {{name: solo}}
spec:
{"".join(line[4:] + chr(10) for line in POD_SPEC.splitlines())}---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: legacy
  annotations: {{warden.dev/inject: "false"}}
spec:
  selector: {{matchLabels: {{app: legacy}}}}
  template:
    metadata:
      labels: {{app: legacy}}
    spec:
{POD_SPEC}"""

WORKLOADS = {"web": "Deployment", "store": "StatefulSet", "node-agent": "DaemonSet", "rs": "ReplicaSet",
             "once": "Job", "nightly": "CronJob", "solo": "Pod"}


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc["spec"], doc["metadata"]
    if doc["kind"] == "CronJob":
        template = doc["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = doc["spec"]["template"]
    return template["spec"], template.get("metadata", {})


def inject(text, *flags):
    out = subprocess.run([WARDEN_BIN, "inject", "-f", "-", *flags], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_manifest_is_valid_to_begin_with(tmp_path):
    (tmp_path / "in.yaml").write_text(MANIFEST)
    result = subprocess.run([VALIDATE, "--strict", "-k", "1.29.0", str(tmp_path / "in.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_workload_kind_gets_the_sidecar_and_validates(tmp_path):
    out = inject(MANIFEST)
    docs = list(yaml.safe_load_all(out))
    assert len(docs) == 9
    by_name = {d["metadata"]["name"]: d for d in docs}
    for name, kind in WORKLOADS.items():
        doc = by_name[name]
        assert doc["kind"] == kind
        spec, metadata = pod_spec(doc)
        [warden] = spec["initContainers"]
        assert warden["name"] == "warden" and warden["restartPolicy"] == "Always", name
        assert {"name": "warden-policy", "configMap": {"name": "warden-policy"}} in spec["volumes"]
        assert metadata["labels"]["warden.dev/sidecar"] == "true"
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env == {"OPENAI_BASE_URL": "http://127.0.0.1:4000/v1", "ANSWER": "yes",
                       "ANTHROPIC_BASE_URL": "http://127.0.0.1:4000"}
        creds = next(v for v in spec["volumes"] if v["name"] == "creds")
        assert creds["secret"]["defaultMode"] == 0o600  # octal, as Kubernetes read it
    legacy_spec, _ = pod_spec(by_name["legacy"])
    assert "initContainers" not in legacy_spec
    (tmp_path / "out.yaml").write_text(out)
    for version in ("1.29.0", "1.37.0"):
        result = subprocess.run([VALIDATE, "--strict", "-k", version, str(tmp_path / "out.yaml")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count(" passed for resource ") == 9


def test_other_documents_are_untouched_and_twice_changes_nothing(tmp_path):
    out = inject(MANIFEST)
    service = MANIFEST.split("---\n")[0]
    assert out.startswith(service)
    legacy = MANIFEST.split("---\n")[-1]
    assert out.endswith(legacy)
    assert inject(out) == out
    # The same from a file as from stdin.
    (tmp_path / "m.yaml").write_text(MANIFEST)
    from_file = run_warden_cli("inject", "-f", str(tmp_path / "m.yaml"))
    assert from_file.returncode == 0 and from_file.stdout == out


def test_flags_name_the_image_config_map_and_secrets():
    out = inject(MANIFEST, "--image", "registry.example.com/warden:9.9", "--config-map", "team-policy",
                 "--provider-secret", "team-llm-keys", "--audit-key-secret", "", "--proxy-port", "4100")
    spec, _ = pod_spec(next(d for d in yaml.safe_load_all(out) if d["metadata"]["name"] == "web"))
    [warden] = spec["initContainers"]
    assert warden["image"] == "registry.example.com/warden:9.9"
    assert warden["envFrom"] == [{"secretRef": {"name": "team-llm-keys"}}]
    assert {"name": "warden-policy", "configMap": {"name": "team-policy"}} in spec["volumes"]
    assert not any(v["name"] == "warden-audit-key" for v in spec["volumes"])
    assert {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:4100/v1"} in spec["containers"][0]["env"]


def test_a_broken_manifest_is_refused_with_the_document_named():
    out = subprocess.run([WARDEN_BIN, "inject", "-f", "-"], input="kind: Pod\n---\nkind: [unclosed\n",
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert "document 2: not valid YAML" in out.stderr
    missing = run_warden_cli("inject", "-f", "/nonexistent/manifest.yaml")
    assert missing.returncode == 1 and "cannot read" in missing.stderr


# === the admission webhook ===

class Webhook:
    def __init__(self, tmp_path, ca):
        self.dir = tmp_path
        self.cert, self.key = tmp_path / "tls.crt", tmp_path / "tls.key"
        self.issue(ca)
        self.port = free_port()
        self.log = open(tmp_path / "webhook.log", "wb")
        self.proc = subprocess.Popen([WARDEN_BIN, "webhook", "--listen", f"127.0.0.1:{self.port}",
                                      "--tls-cert", str(self.cert), "--tls-key", str(self.key)],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def issue(self, ca):
        leaf = ca.issue_cert("warden-webhook.warden-system.svc", "127.0.0.1")
        # Written as a rotation does: the new files replace the old ones whole.
        for path, pem in ((self.key, leaf.private_key_pem.bytes()),
                          (self.cert, b"".join(b.bytes() for b in leaf.cert_chain_pems))):
            tmp = path.with_suffix(".new")
            tmp.write_bytes(pem)
            tmp.rename(path)

    def post(self, ca, body, path="/mutate"):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait(self, ca):
        deadline = time.time() + 15
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.dir / "webhook.log").read_text()
            try:
                return self.post(ca, b"{}")
            except (OSError, ssl.SSLError):
                time.sleep(0.1)
        raise AssertionError("webhook did not start: " + (self.dir / "webhook.log").read_text())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_webhook_patches_a_recorded_pod_review_over_tls(tmp_path):
    ca = trustme.CA()
    hook = Webhook(tmp_path, ca)
    try:
        assert hook.wait(ca)[0] == 400  # `{}` is not a review
        review = json.loads((FIXTURES / "admission-review-pod.json").read_text())
        status, answer = hook.post(ca, json.dumps(review).encode())
        assert status == 200
        assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"] and response["allowed"] is True
        assert response["patchType"] == "JSONPatch"
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"])))
        pod = patch.apply(review["request"]["object"])
        [warden] = pod["spec"]["initContainers"]
        assert warden["restartPolicy"] == "Always"
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["OPENAI_BASE_URL"]["value"] == "http://127.0.0.1:4000/v1"
        assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "support-bot-warden-key"
        assert pod["metadata"]["labels"]["warden.dev/sidecar"] == "true"
        # The patched pod is one the API server accepts.
        pod.pop("status")
        pod["metadata"].pop("creationTimestamp")
        pod["metadata"]["name"] = pod["metadata"]["generateName"] + "x7k2p"  # as the API server names it
        (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
        result = subprocess.run([VALIDATE, "--strict", "-k", "1.29.0", str(tmp_path / "pod.yaml")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout
        # The injected pod, reviewed again (a reinvocation), gets no patch.
        review["request"]["object"] = pod
        status, again = hook.post(ca, json.dumps(review).encode())
        assert status == 200 and "patch" not in again["response"]
        # An opted-out pod and a non-pod pass unchanged; garbage is a 400.
        review["request"]["object"] = {"metadata": {"annotations": {"warden.dev/inject": "false"}},
                                       "spec": {"containers": [{"name": "a", "image": "a"}]}}
        assert "patch" not in hook.post(ca, json.dumps(review).encode())[1]["response"]
        status, refused = hook.post(ca, b"not json")
        assert status == 400 and refused["error"]["code"] == "invalid_review"
    finally:
        hook.stop()


def test_webhook_serves_a_rotated_certificate_without_restarting(tmp_path):
    old_ca, new_ca = trustme.CA(), trustme.CA()
    hook = Webhook(tmp_path, old_ca)
    try:
        hook.wait(old_ca)
        hook.issue(new_ca)
        deadline = time.time() + 10
        while True:
            try:
                status, _ = hook.post(new_ca, b"{}")
                break
            except (OSError, ssl.SSLError):
                assert time.time() < deadline, "the rotated certificate was never served"
                time.sleep(0.2)
        assert status == 400
        assert hook.proc.poll() is None
        try:
            hook.post(old_ca, b"{}")
            raise AssertionError("the old certificate is still served")
        except (urllib.error.URLError, ssl.SSLError):
            pass
    finally:
        hook.stop()


def test_webhook_without_its_certificate_does_not_start(tmp_path):
    out = run_warden_cli("webhook", "--listen", f"127.0.0.1:{free_port()}",
                         "--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(tmp_path / "missing.key"))
    assert out.returncode == 1 and "cannot read" in out.stderr


def test_the_readme_example_injects_into_valid_manifests(tmp_path):
    example = Path(__file__).resolve().parents[2] / "deploy/examples/agent-app.yaml"
    out = run_warden_cli("inject", "-f", str(example))
    assert out.returncode == 0, out.stderr
    docs = list(yaml.safe_load_all(out.stdout))
    assert [pod_spec(d)[0]["initContainers"][0]["name"] for d in docs] == ["warden", "warden"]
    (tmp_path / "out.yaml").write_text(out.stdout)
    for path in (example, tmp_path / "out.yaml"):
        result = subprocess.run([VALIDATE, "--strict", "-k", "1.29.0", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.count(" passed for resource ") == 2, result.stdout
