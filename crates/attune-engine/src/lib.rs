//! attune-engine: everything Attune does, without HTTP — ingest, identity, profiles, catalog,
//! keys and audit, the decide pipeline, training and privacy operations, and the [`Scheduler`]
//! that owns every background job.
//!
//! Uses storage only through `Arc<dyn Store>` and never knows the backend. Every method is
//! blocking (it may wait for an fsync); the server calls it off the async runtime. Time comes from
//! a [`Clock`], so tests move it by hand.
//!
//! Start at [`Engine::open`] (what is loaded at start) and [`Engine::ingest`] (the event path).
#![warn(missing_docs)]

pub mod audit;
pub mod catalog;
pub mod clock;
pub mod cluster;
pub mod decide;
pub mod decisions;
pub mod digest;
pub mod editorial;
pub mod error;
pub mod experiments;
mod fold;
mod front;
mod ingest;
pub mod keys;
pub mod ledger;
pub mod measure;
pub mod memory;
pub mod models;
pub mod people;
pub mod privacy;
mod profiles;
mod records;
pub mod scheduler;
mod signals;
pub mod stats;
pub mod sync;
pub mod variants;

pub use audit::{AuditEntry, AuditLog};
pub use catalog::Catalog;
pub use clock::{Clock, Ids, ManualClock, SequentialIds, SystemClock, UlidIds};
pub use decisions::DecisionLog;
pub use editorial::Editorial;
pub use error::{EngineError, Invalid, Result, UserError};
pub use experiments::Experiments;
pub use front::{BACKUP_MANIFEST, ENGINE_FAMILIES, Engine, EngineConfig};
pub use ingest::{IngestItem, IngestReport, PreparedBatch};
pub use keys::{ApiKey, Keys, Scope};
pub use memory::MemoryEstimate;
pub use models::Models;
pub use people::{People, PersonState};
pub use privacy::{ErasureReceipt, ForgetReport, PersonExport, PrivacyReport, SweepReport};
pub use profiles::{MergeReport, PersonView};
pub use scheduler::{Job, JobStatus, Scheduler, SchedulerConfig};
pub use sync::SyncReport;
pub use variants::VariantBandits;
