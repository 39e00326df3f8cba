//! `warden schema`: prints the policy format's JSON Schema, generated from the same types the
//! policy is read into (so it cannot drift from what `serve` accepts). `config/warden.schema.json`
//! is this output, checked in for editors (`# yaml-language-server: $schema=…`).

use std::process::ExitCode;

use crate::config::file::PolicyFile;

/// The schema as pretty-printed JSON, ending in a newline.
pub fn text() -> String {
    let mut schema = schemars::schema_for!(PolicyFile);
    schema.insert("title".into(), "Warden policy, version 1".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

/// Prints the schema.
pub fn run() -> ExitCode {
    print!("{}", text());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    /// The checked-in copy is what this build generates: run `warden schema >
    /// config/warden.schema.json` after changing a spec type.
    #[test]
    fn the_checked_in_schema_is_current() {
        let checked_in = include_str!("../../config/warden.schema.json");
        assert!(
            checked_in == super::text(),
            "config/warden.schema.json is stale: regenerate it with `warden schema`"
        );
    }
}
