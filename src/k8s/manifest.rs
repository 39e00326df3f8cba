//! `warden inject` on a multi-document manifest: every workload's pod template gets the sidecar
//! ([`Sidecar::inject`]); every other document is written back byte for byte, comments and
//! all. A workload document that is changed is written back from its parsed form, so its
//! comments are lost (as with `istioctl kube-inject`).
//!
//! Documents are read the way Kubernetes reads them (YAML 1.1 scalars: `0644` is octal), so a
//! rewritten document means what the original meant.

use serde_json::Value;
use thiserror::Error;

use super::sidecar::{Injection, Sidecar};

/// A manifest that cannot be injected, with the 1-based number of the document at fault.
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document}: cannot write it back as YAML: {message}")]
    Write { document: usize, message: String },
}

/// What injecting a manifest did: the new text and how many pod templates got a sidecar.
#[derive(Debug)]
pub struct Injected {
    pub text: String,
    pub injected: usize,
}

/// Adds the sidecar to every Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and
/// Pod in `text` (also inside a `kind: List`), leaving every other document untouched.
pub fn inject(text: &str, sidecar: &Sidecar) -> Result<Injected, ManifestError> {
    let mut out = String::with_capacity(text.len() + 2048);
    let mut injected = 0;
    for (index, document) in documents(text).into_iter().enumerate() {
        out.push_str(document.separator);
        let number = index + 1;
        if is_blank(document.body) {
            out.push_str(document.body);
            continue;
        }
        let mut value: Value = serde_saphyr::from_str_with_options(document.body, read_options())
            .map_err(|e| ManifestError::Yaml {
            document: number,
            message: e.to_string(),
        })?;
        let count = inject_object(&mut value, sidecar);
        if count == 0 {
            out.push_str(document.body);
            continue;
        }
        injected += count;
        let yaml = serde_saphyr::to_string(&value).map_err(|e| ManifestError::Write {
            document: number,
            message: e.to_string(),
        })?;
        out.push_str(&yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(Injected {
        text: out,
        injected,
    })
}

/// Injects into one Kubernetes object (or each item of a `List`); returns how many pod
/// templates changed.
pub fn inject_object(object: &mut Value, sidecar: &Sidecar) -> usize {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" {
        return object
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .map_or(0, |items| {
                items.iter_mut().map(|i| inject_object(i, sidecar)).sum()
            });
    }
    let workload_opted_out = super::sidecar::opted_out(object.get("metadata"));
    let template = match kind {
        "Pod" => Some(object),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            object.pointer_mut("/spec/template")
        }
        "CronJob" => object.pointer_mut("/spec/jobTemplate/spec/template"),
        _ => None,
    };
    let Some(template) = template else {
        return 0;
    };
    if workload_opted_out {
        return 0;
    }
    let Some(template) = template.as_object_mut() else {
        return 0;
    };
    let mut metadata = template
        .remove("metadata")
        .unwrap_or_else(|| Value::Object(Default::default()));
    let mut spec = template.remove("spec").unwrap_or(Value::Null);
    let outcome = sidecar.inject(&mut metadata, &mut spec);
    template.insert("metadata".into(), metadata);
    if !spec.is_null() {
        template.insert("spec".into(), spec);
    }
    usize::from(outcome == Injection::Injected)
}

/// Reads scalars so that writing them back means the same to Kubernetes: YAML 1.1 octal as
/// Kubernetes reads it (`defaultMode: 0644` is 420), and only `true`/`false` as booleans, so a
/// string like `N` or `yes` stays a string (and is written back quoted).
fn read_options() -> serde_saphyr::Options {
    serde_saphyr::options! { legacy_octal_numbers: true, strict_booleans: true }
}

/// One document of a YAML stream: the separator line that opened it (empty for the first) and
/// its text.
struct Document<'t> {
    separator: &'t str,
    body: &'t str,
}

/// Splits a YAML stream at its `---` lines (a line that is `---`, optionally followed by
/// whitespace or a comment). A `...` end marker stays inside the document it ends.
fn documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut separator = "";
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if is_separator(line) {
            documents.push(Document {
                separator,
                body: &text[start..offset],
            });
            separator = line;
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(Document {
        separator,
        body: &text[start..],
    });
    documents
}

fn is_separator(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("---") else {
        return false;
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.is_empty() || rest.starts_with(['\n', '\r', '#'])
}

/// Only whitespace and comments: nothing to parse, kept as is.
fn is_blank(body: &str) -> bool {
    body.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "..."
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const MANIFEST: &str = "# leading comment
apiVersion: v1
kind: ConfigMap   # untouched, comment kept
metadata: {name: c}
data: {mode: '0644'}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    metadata: {labels: {app: d}}
    spec:
      containers: [{name: app, image: app, env: [{name: N, value: 'yes'}]}]
      volumes: [{name: s, secret: {secretName: s, defaultMode: 0644}}]
--- # a CronJob
apiVersion: batch/v1
kind: CronJob
metadata: {name: j}
spec:
  schedule: '* * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: app, image: app}]
";

    fn parse_all(text: &str) -> Vec<Value> {
        documents(text)
            .iter()
            .filter(|d| !is_blank(d.body))
            .map(|d| serde_saphyr::from_str_with_options(d.body, read_options()).unwrap())
            .collect()
    }

    #[test]
    fn injects_workloads_and_keeps_other_documents_byte_for_byte() {
        let out = inject(MANIFEST, &Sidecar::default()).unwrap();
        assert_eq!(out.injected, 2);
        let first = documents(MANIFEST)[0].body;
        assert!(out.text.starts_with(first));
        assert!(out.text.contains("--- # a CronJob\n"));
        let docs = parse_all(&out.text);
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[1]["spec"]["template"]["spec"]["initContainers"][0]["name"],
            "warden"
        );
        // 0644 is octal, as Kubernetes reads it, and stays so when written back.
        assert_eq!(
            docs[1]["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"],
            0o644
        );
        assert_eq!(
            docs[1]["spec"]["template"]["metadata"]["labels"]["app"],
            "d"
        );
        // YAML 1.1 spellings of booleans stay strings.
        let env = &docs[1]["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!((&env["name"], &env["value"]), (&json!("N"), &json!("yes")));
        let job = &docs[2]["spec"]["jobTemplate"]["spec"]["template"];
        assert_eq!(job["spec"]["initContainers"][0]["restartPolicy"], "Always");
    }

    #[test]
    fn injecting_twice_changes_nothing() {
        let once = inject(MANIFEST, &Sidecar::default()).unwrap();
        let twice = inject(&once.text, &Sidecar::default()).unwrap();
        assert_eq!(twice.injected, 0);
        assert_eq!(twice.text, once.text);
    }

    #[test]
    fn a_broken_document_is_named() {
        let err = inject("kind: Pod\n---\nkind: [\n", &Sidecar::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("document 2: not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn lists_and_workload_opt_outs() {
        let list = "kind: List\nitems:\n- kind: Pod\n  metadata: {name: p}\n  spec: {containers: [{name: a}]}\n- kind: Deployment\n  metadata: {name: d, annotations: {warden.dev/inject: 'false'}}\n  spec: {template: {spec: {containers: [{name: a}]}}}\n";
        let out = inject(list, &Sidecar::default()).unwrap();
        assert_eq!(out.injected, 1);
    }
}
