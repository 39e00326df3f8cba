//! `AdmissionReview` (admission.k8s.io/v1) for the mutating webhook: a Pod in, the same Pod with
//! the sidecar out, answered as an RFC 6902 JSON patch of the difference.
//!
//! The API server only sends pods the `MutatingWebhookConfiguration` selects (opt-in label on
//! the namespace or the pod); the review does not carry namespace labels, so every pod that
//! arrives is injected unless it opts out itself. Anything that is not a pod is allowed
//! unchanged: the webhook never blocks what it does not understand.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use thiserror::Error;

use super::sidecar::{Injection, Sidecar};

/// A request body that is not an `AdmissionReview` this webhook can answer (HTTP 400).
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("not an admission.k8s.io/v1 AdmissionReview with a request and its uid")]
    NotAReview,
}

/// Answers one `AdmissionReview` request body with the review response to send back.
pub fn review(body: &[u8], sidecar: &Sidecar) -> Result<Value, ReviewError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err(ReviewError::NotAReview);
    }
    let request = review.get("request").ok_or(ReviewError::NotAReview)?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or(ReviewError::NotAReview)?;
    let mut response = json!({"uid": uid, "allowed": true});
    let is_pod = request.pointer("/kind/kind").and_then(Value::as_str) == Some("Pod")
        && request
            .pointer("/kind/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
    if let (true, Some(pod)) = (is_pod, request.get("object")) {
        let mut injected = pod.clone();
        if inject_pod(&mut injected, sidecar) == Injection::Injected {
            let patch = json_patch::diff(pod, &injected);
            let patch = serde_json::to_vec(&patch).unwrap_or_default();
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(STANDARD.encode(patch));
        }
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

fn inject_pod(pod: &mut Value, sidecar: &Sidecar) -> Injection {
    let Some(pod) = pod.as_object_mut() else {
        return Injection::NotAPod;
    };
    let mut metadata = pod.remove("metadata").unwrap_or_else(|| json!({}));
    let mut spec = pod.remove("spec").unwrap_or(Value::Null);
    let outcome = sidecar.inject(&mut metadata, &mut spec);
    pod.insert("metadata".into(), metadata);
    pod.insert("spec".into(), spec);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": kind},
                        "operation": "CREATE", "object": object},
        }))
        .unwrap()
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "app-"},
               "spec": {"containers": [{"name": "app", "image": "app"}]}})
    }

    #[test]
    fn a_pod_gets_a_patch_that_makes_it_the_injected_pod() {
        let answer = review(&request("Pod", pod()), &Sidecar::default()).unwrap();
        let response = &answer["response"];
        assert_eq!(response["uid"], "u-1");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut patched = pod();
        json_patch::patch(&mut patched, &patch).unwrap();
        let mut expected = pod();
        inject_pod(&mut expected, &Sidecar::default());
        assert_eq!(patched, expected);
    }

    #[test]
    fn other_objects_and_opted_out_pods_pass_unchanged() {
        let mut opted_out = pod();
        opted_out["metadata"]["annotations"] = json!({"warden.dev/inject": "false"});
        for body in [request("Service", json!({})), request("Pod", opted_out)] {
            let answer = review(&body, &Sidecar::default()).unwrap();
            assert_eq!(answer["response"]["allowed"], true);
            assert!(answer["response"].get("patch").is_none());
        }
    }

    #[test]
    fn malformed_reviews_are_refused() {
        for body in [
            &b"{"[..],
            b"{}",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
        ] {
            assert!(review(body, &Sidecar::default()).is_err());
        }
    }
}
