//! Huawei Cloud VPC v3 traffic-mirror access: AK/SK signer, wire models, typed client, errors.
//!
//! Knows nothing of Kubernetes. The signer's functions are pure and public so the emulator's
//! verifier uses the very same canonicalisation; the client sends each call once and classifies
//! failures ([`CloudError::is_retryable`]), leaving retry policy to the controller.

pub mod client;
pub mod error;
pub mod models;
pub mod ports;
pub mod signer;

pub use client::{ClientConfig, VpcClient};
pub use error::CloudError;
pub use signer::{Credentials, Signer};
