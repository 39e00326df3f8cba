//! `warden keys new --agent ID`: make an agent API key.

use std::process::ExitCode;

use crate::identity::api_key::{generate_secret, hash_secret};

/// Prints the secret once (stdout) and the policy YAML that admits it; only the hash is stored.
pub fn new(agent: &str) -> ExitCode {
    let secret = match generate_secret() {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("warden: cannot get random bytes: {e}");
            return ExitCode::from(1);
        }
    };
    let hash = hex::encode(hash_secret(secret.as_bytes()));
    let key_id = format!("{agent}-{}", jiff::Zoned::now().strftime("%Y-%m-%d"));
    println!("API key for agent `{agent}` (shown once; give it to the agent, do not commit it):");
    println!();
    println!("  {secret}");
    println!();
    println!("Add to the agent's `keys:` in policy:");
    println!();
    println!("  agents:");
    println!("    {agent}:");
    println!("      keys:");
    println!("        - {{id: {key_id}, sha256: {hash}}}");
    ExitCode::SUCCESS
}
