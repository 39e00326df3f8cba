//! The Warden sidecar as it is added to a pod: one function, [`Sidecar::inject`], shared by
//! `warden inject` (manifests) and `warden webhook` (admission), so both add exactly the same
//! thing. It mirrors `deploy/base/agent-app.yaml`: a native sidecar (an init container with
//! `restartPolicy: Always`), the policy ConfigMap mounted as a directory, provider keys from a
//! Secret, the app containers' SDK base URLs pointed at Warden.

use serde_json::{json, Map, Value};

/// The label or annotation a pod or workload opts in or out with.
pub const INJECT_KEY: &str = "warden.dev/inject";
/// The label every injected pod carries: the PodMonitor selects pods by it.
pub const SIDECAR_LABEL: &str = "warden.dev/sidecar";
/// The sidecar container's name; a pod that has a container of this name is left alone.
pub const CONTAINER_NAME: &str = "warden";

/// What the sidecar is made of: the image and the names of what it mounts.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// Warden's image reference.
    pub image: String,
    /// The ConfigMap holding the policy files (mounted whole at `/etc/warden/policy`).
    pub config_map: String,
    /// The Secret whose keys become the sidecar's environment (`OPENAI_API_KEY`, …).
    pub provider_secret: String,
    /// The Secret holding the audit signing key (at `/var/run/secrets/warden`), if any.
    pub audit_key_secret: Option<String>,
    /// The proxy port the policy listens on (127.0.0.1), which the app's base URLs point at.
    pub proxy_port: u16,
    /// The admin port (probes, metrics).
    pub admin_port: u16,
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar {
            image: format!("ghcr.io/warden-dev/warden:{}", env!("CARGO_PKG_VERSION")),
            config_map: "warden-policy".into(),
            provider_secret: "warden-provider-keys".into(),
            audit_key_secret: Some("warden-audit-key".into()),
            proxy_port: 4000,
            admin_port: 9464,
        }
    }
}

/// What [`Sidecar::inject`] did to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// The sidecar was added.
    Injected,
    /// The pod already has a `warden` container: nothing changed (injection is idempotent).
    AlreadyPresent,
    /// The pod or its workload opted out (`warden.dev/inject: "false"` or `disabled`).
    OptedOut,
    /// The pod spec is not an object with containers: nothing to inject into.
    NotAPod,
}

/// True if `metadata` opts out, by label or annotation.
pub fn opted_out(metadata: Option<&Value>) -> bool {
    ["labels", "annotations"].iter().any(|field| {
        metadata
            .and_then(|m| m.get(field))
            .and_then(|m| m.get(INJECT_KEY))
            .and_then(Value::as_str)
            .is_some_and(|v| matches!(v, "false" | "disabled"))
    })
}

impl Sidecar {
    /// Adds the sidecar to a pod given its `metadata` and `spec` (a Pod's own, or a workload's
    /// pod template's).
    pub fn inject(&self, metadata: &mut Value, spec: &mut Value) -> Injection {
        if opted_out(Some(metadata)) {
            return Injection::OptedOut;
        }
        let Some(spec) = spec.as_object_mut() else {
            return Injection::NotAPod;
        };
        if !spec.get("containers").is_some_and(Value::is_array) {
            return Injection::NotAPod;
        }
        let has_sidecar = ["initContainers", "containers"].iter().any(|list| {
            spec.get(*list).and_then(Value::as_array).is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("name") == Some(&json!(CONTAINER_NAME)))
            })
        });
        if has_sidecar {
            return Injection::AlreadyPresent;
        }
        if !metadata.is_object() {
            *metadata = json!({});
        }
        if let Some(labels) = object_at(metadata, "labels") {
            labels.insert(SIDECAR_LABEL.into(), json!("true"));
        }
        let base_urls = [
            (
                "OPENAI_BASE_URL",
                format!("http://127.0.0.1:{}/v1", self.proxy_port),
            ),
            (
                "ANTHROPIC_BASE_URL",
                format!("http://127.0.0.1:{}", self.proxy_port),
            ),
        ];
        if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
            for container in containers {
                for (name, value) in &base_urls {
                    set_env(container, name, value);
                }
            }
        }
        if !spec.get("initContainers").is_some_and(Value::is_array) {
            spec.insert("initContainers".into(), json!([]));
        }
        if let Some(init) = spec.get_mut("initContainers").and_then(Value::as_array_mut) {
            // First, so it is up before any other init container that might call a model.
            init.insert(0, self.container());
        }
        if !spec.get("volumes").is_some_and(Value::is_array) {
            spec.insert("volumes".into(), json!([]));
        }
        if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            volumes.extend(self.volumes());
        }
        Injection::Injected
    }

    fn container(&self) -> Value {
        let mut mounts = vec![
            json!({"name": "warden-policy", "mountPath": "/etc/warden/policy", "readOnly": true}),
            json!({"name": "warden-spool", "mountPath": "/var/lib/warden/spool"}),
        ];
        if self.audit_key_secret.is_some() {
            mounts.push(json!({"name": "warden-audit-key", "mountPath": "/var/run/secrets/warden", "readOnly": true}));
        }
        let probe = |path: &str, period: u32| json!({"httpGet": {"path": path, "port": "warden-admin"}, "periodSeconds": period});
        let mut startup = probe("/readyz", 1);
        startup["failureThreshold"] = json!(30);
        json!({
            "name": CONTAINER_NAME,
            "image": self.image,
            "restartPolicy": "Always",
            "args": ["serve", "--config", "/etc/warden/policy"],
            "ports": [
                {"name": "warden-proxy", "containerPort": self.proxy_port},
                {"name": "warden-admin", "containerPort": self.admin_port},
            ],
            "env": [{"name": "WARDEN_LOG_FORMAT", "value": "json"}],
            "envFrom": [{"secretRef": {"name": self.provider_secret}}],
            "volumeMounts": mounts,
            "startupProbe": startup,
            "readinessProbe": probe("/readyz", 5),
            "livenessProbe": probe("/healthz", 10),
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            },
        })
    }

    fn volumes(&self) -> Vec<Value> {
        let mut volumes = vec![
            json!({"name": "warden-policy", "configMap": {"name": self.config_map}}),
            json!({"name": "warden-spool", "emptyDir": {"sizeLimit": "1Gi"}}),
        ];
        if let Some(secret) = &self.audit_key_secret {
            volumes.push(json!({"name": "warden-audit-key", "secret": {"secretName": secret, "defaultMode": 0o444}}));
        }
        volumes
    }
}

/// The object at `parent[field]`, created if missing; `None` if it is there but not an object.
fn object_at<'v>(parent: &'v mut Value, field: &str) -> Option<&'v mut Map<String, Value>> {
    let parent = parent.as_object_mut()?;
    parent
        .entry(field)
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

/// Sets a container's env var `name` to `value`, replacing a value (or `valueFrom`) it had: an
/// SDK still pointed at the provider would bypass Warden.
fn set_env(container: &mut Value, name: &str, value: &str) {
    let Some(container) = container.as_object_mut() else {
        return;
    };
    let env = container.entry("env").or_insert_with(|| json!([]));
    let Some(env) = env.as_array_mut() else {
        return;
    };
    let entry = json!({"name": name, "value": value});
    match env.iter_mut().find(|e| e.get("name") == Some(&json!(name))) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> (Value, Value) {
        (
            json!({"name": "p"}),
            json!({"containers": [{"name": "app", "image": "app:1",
                "env": [{"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"}]}]}),
        )
    }

    #[test]
    fn adds_a_native_sidecar_and_points_the_app_at_it() {
        let (mut meta, mut spec) = pod();
        assert_eq!(
            Sidecar::default().inject(&mut meta, &mut spec),
            Injection::Injected
        );
        assert_eq!(spec["initContainers"][0]["name"], "warden");
        assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
        let env = &spec["containers"][0]["env"];
        assert_eq!(env[0]["value"], "http://127.0.0.1:4000/v1");
        assert_eq!(env[1]["name"], "ANTHROPIC_BASE_URL");
        assert_eq!(meta["labels"][SIDECAR_LABEL], "true");
        let volumes: Vec<_> = spec["volumes"]
            .as_array()
            .map(|v| v.iter().map(|v| v["name"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(
            volumes,
            [
                json!("warden-policy"),
                json!("warden-spool"),
                json!("warden-audit-key")
            ]
        );
    }

    #[test]
    fn twice_changes_nothing_and_opting_out_is_respected() {
        let sidecar = Sidecar::default();
        let (mut meta, mut spec) = pod();
        sidecar.inject(&mut meta, &mut spec);
        let once = (meta.clone(), spec.clone());
        assert_eq!(
            sidecar.inject(&mut meta, &mut spec),
            Injection::AlreadyPresent
        );
        assert_eq!((meta, spec), once);
        for (field, value) in [("annotations", "false"), ("labels", "disabled")] {
            let (mut meta, mut spec) = pod();
            meta[field] = json!({INJECT_KEY: value});
            let before = spec.clone();
            assert_eq!(sidecar.inject(&mut meta, &mut spec), Injection::OptedOut);
            assert_eq!(spec, before);
        }
    }

    #[test]
    fn odd_shapes_are_not_pods() {
        let sidecar = Sidecar::default();
        for mut spec in [json!(null), json!("x"), json!({"containers": "app"})] {
            assert_eq!(
                sidecar.inject(&mut json!({}), &mut spec),
                Injection::NotAPod
            );
        }
    }
}
