//! Which chain a shipper continues: the instance's saved chain, or a new one that cannot be
//! mistaken for an earlier chain of the same name.

use super::chain::ChainState;
use super::AuditSettings;
use crate::clock::Clock;

/// The chain to write to, from the state saved in the spool (if any) and the configured
/// instance name (if any).
pub fn chain_to_continue(
    restored: Option<ChainState>,
    settings: &AuditSettings,
    clock: &dyn Clock,
) -> ChainState {
    match (restored, &settings.instance) {
        (Some(state), Some(wanted)) if &state.instance != wanted => {
            fresh_named_chain(wanted, settings, clock)
        }
        (Some(state), _) => state,
        (None, Some(wanted)) => fresh_named_chain(wanted, settings, clock),
        (None, None) => ChainState::new(default_instance()),
    }
}

/// A new chain for a configured `instance` name whose chain state is not in the spool (first
/// start, a renamed instance, or a lost spool directory: they cannot be told apart).
///
/// Collectors dedupe on instance and `seq`, so starting again at 1 would make them drop the new
/// chain's records as copies of the old one's. The chain starts instead at the current Unix
/// time in microseconds, beyond any `seq` an earlier chain of the name can have reached
/// (that would take more than one event per microsecond), and says so in the log.
fn fresh_named_chain(instance: &str, settings: &AuditSettings, clock: &dyn Clock) -> ChainState {
    let start = u64::try_from(clock.now().as_microsecond())
        .unwrap_or(1)
        .max(1);
    log::warn!(
        "audit: no chain state for instance `{instance}` in {}: starting a new chain at seq {start}, so it cannot collide with an earlier chain of this name (if the spool directory was lost, so were its unshipped events)",
        settings.spool_dir.display()
    );
    let mut chain = ChainState::new(instance.to_string());
    chain.seq = start - 1;
    chain
}

/// `<host name>-<8 hex>`: stable for the spool directory's life, unique across pods.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "warden".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}
