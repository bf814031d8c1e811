//! Pure OCI types and parsers for berth.
//!
//! Nothing in this crate performs I/O or depends on an async runtime: it turns
//! untrusted strings and bytes (repository names, references, digests, range
//! headers, manifest bodies) into validated types, so every layer above can rely
//! on them without re-checking.

pub mod digest;
pub mod error_code;
pub mod glob;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod range;
pub mod reference;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error_code::ErrorCode;
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, RepoName};
pub use range::{ByteRange, ContentRange, RangeError};
pub use reference::{Reference, Tag, TagError};
