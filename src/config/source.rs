//! Where policy comes from: one YAML file, or a directory of them (a mounted ConfigMap).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// The raw text of every policy file, in load order, and the version they make together.
#[derive(Debug, Clone)]
pub struct Sources {
    pub files: Vec<SourceFile>,
    /// SHA-256 (hex) over every file's name and contents: equal sources, equal version.
    pub version: String,
}

/// One policy file's path and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Reads `path`: a file, or every `*.yaml` / `*.yml` in a directory, sorted by name.
///
/// Hidden entries are skipped, which is what makes a Kubernetes ConfigMap mount load cleanly:
/// its `..data` and `..2026_…` directories are hidden and the visible names are symlinks into them.
/// So is a `kustomization.yaml`: a policy directory in git is often also the kustomize root that
/// generates its ConfigMap (`config/examples/`), and that file is kustomize's, not policy.
pub fn read(path: &Path) -> Result<Sources, Problem> {
    let meta = fs::metadata(path)
        .map_err(|e| Problem::file_error(path, format!("cannot read policy: {e}")))?;
    let paths = if meta.is_dir() {
        policy_files_in(path)?
    } else {
        vec![path.to_path_buf()]
    };
    let mut files = Vec::with_capacity(paths.len());
    let mut hasher = Sha256::new();
    for path in paths {
        let text = fs::read_to_string(&path)
            .map_err(|e| Problem::file_error(&path, format!("cannot read policy: {e}")))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        hasher.update(name.unwrap_or_default().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        files.push(SourceFile { path, text });
    }
    Ok(Sources {
        files,
        version: hex::encode(hasher.finalize()),
    })
}

/// Builds sources from text held in memory (the embedded demo policy, tests).
pub fn from_text(name: &str, text: &str) -> Sources {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(text.as_bytes());
    hasher.update([0]);
    Sources {
        files: vec![SourceFile {
            path: PathBuf::from(name),
            text: text.to_string(),
        }],
        version: hex::encode(hasher.finalize()),
    }
}

/// The names kustomize reads its build from.
const KUSTOMIZE_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml"];

fn policy_files_in(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let entries = fs::read_dir(dir)
        .map_err(|e| Problem::file_error(dir, format!("cannot list policy directory: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Problem::file_error(dir, format!("cannot list policy directory: {e}")))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if name.starts_with('.') || !is_yaml || KUSTOMIZE_FILES.contains(&name.as_ref()) {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Problem::file_error(
            dir,
            "policy directory has no *.yaml or *.yml files",
        ));
    }
    paths.sort();
    Ok(paths)
}
