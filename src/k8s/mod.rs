//! Kubernetes: adding the Warden sidecar to pods, from a manifest (`warden inject`) or at
//! admission (`warden webhook`). Both use one definition of the sidecar, [`sidecar::Sidecar`].

pub mod admission;
pub mod manifest;
pub mod sidecar;
pub mod webhook;
