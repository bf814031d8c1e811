//! Security primitives and pure access decisions for berth.
//!
//! This crate holds what must be right once and then trusted everywhere:
//! password hashing ([`password`]), random secrets and personal access tokens
//! ([`secret`]), ES256 JWTs ([`jwt`]), Docker token scopes ([`scope`]), the
//! decision of who may pull, push or delete ([`permissions`]), TOTP second
//! factors ([`totp`]), the tamper-evident audit chain ([`audit_chain`]) and the
//! per-key rate limiter ([`ratelimit`]).
//!
//! It performs no database or network I/O and knows no HTTP framework: the
//! metadata layer stores what these functions produce, and the HTTP layer
//! feeds them the facts it has loaded and maps their answers to status codes.
//! The only file it touches is the token signing key.

// Everything public here is API other crates build on.
#![warn(missing_docs)]

pub mod audit_chain;
mod base32;
pub mod error;
pub mod jwt;
pub mod password;
pub mod permissions;
pub mod ratelimit;
pub mod scope;
pub mod sealed;
pub mod secret;
pub mod totp;

pub use audit_chain::{BrokenLink, ChainEntry, GENESIS_HASH, LinkFault};
pub use error::AccessError;
pub use jwt::{Claims, TokenError, TokenKind, TokenSigner};
pub use password::PolicyError;
pub use permissions::{
    MemberRole, Perms, ProjectAccess, Subject, TokenPermission, UserRole, Visibility, repo_perms, token_perms,
};
pub use ratelimit::{RateDecision, RateLimiter, RatePolicy};
pub use scope::{AccessEntry, Action, ResourceScope, ScopeError, glob_match};
pub use secret::{NewPat, PAT_PREFIX};
