//! attune-core: Attune's domain — items, events, consent, preferences, profiles, journey stages and
//! the validation rules every event passes before it may be stored.
//!
//! **Pure:** no IO, no async, no clock, no RNG. Time (`now`) is always an argument, so every rule here
//! is deterministic and tested without mocks. Wire types (the JSON of `API.md`) live in
//! `attune-server`; the types here are what the engine and the store agree on. Where storage needs
//! bytes, the `serde` derives below define the *storage* format (postcard), not the HTTP API.
//!
//! Start at [`validate::validate_event`] (what an event must satisfy) and [`profile::Profile::fold`]
//! (what an event does to a person's profile).
#![warn(missing_docs)]

pub mod channel;
pub mod consent;
pub mod event;
pub mod id;
pub mod item;
pub mod journey;
pub mod preferences;
pub mod profile;
pub mod schema;
pub mod send_hour;
pub mod validate;
pub mod zone;

pub use channel::Channel;
pub use consent::{Consent, Purpose};
pub use event::{BuiltinType, Context, Event, EventType, PropValue, Subject};
pub use id::{IdError, check_id};
pub use item::Item;
pub use journey::JourneyStage;
pub use preferences::{Preferences, QuietHours};
pub use profile::{Affinity, FoldEvent, FoldSignal, HourCounts, ItemIdx, Profile, TagIdx};
pub use schema::{JourneySignal, PropType, Schema, Signal, SignalTags};
pub use zone::{SeenZone, ZoneId};
