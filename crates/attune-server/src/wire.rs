//! The wire types of `API.md`: what clients send and receive. Core types never cross this line;
//! handlers convert by hand, so a change in the domain cannot silently change the API.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

// ---- events ----

/// `POST /v1/events` body. Each event is checked on its own, so one bad event never fails the
/// batch; the batch itself must be an object with an `events` array.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsIn {
    /// At most 1,000 events (and 1 MiB in all).
    #[schema(value_type = Vec<EventIn>, max_items = 1000)]
    pub events: Vec<Value>,
}

/// One event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Unique event id (1–128 printable characters); a repeated id is a duplicate.
    pub id: Option<String>,
    /// `view`, `click`, `add_to_cart`, `purchase`, `rating`, `dwell`, `not_interested`, `search`,
    /// `survey`, `email_open`, `notification_open`, or a declared type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A known person. Exactly one of `user` and `anonymous_id`.
    pub user: Option<String>,
    /// A device or browser. Exactly one of `user` and `anonymous_id`.
    pub anonymous_id: Option<String>,
    /// The item it is about (required for item events).
    pub item: Option<String>,
    /// RFC 3339; defaults to the time of receipt.
    pub ts: Option<String>,
    /// `web`, `app`, `email`, `push`, `in_person` or `offline_purchase` (anything else: rejected
    /// with `invalid_channel`). `in_person` and `offline_purchase` events name a known `user`.
    /// Counted per channel in the person's profile (`GET /v1/users/{id}`: `channels`).
    pub channel: Option<String>,
    /// `device`, `timezone`, `geo`, `weather`, `local_time`, `page`, `locale` (strings). `geo` and
    /// `weather` are dropped without `contextual` consent; other keys are dropped.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// Properties declared for the type; others are dropped and reported.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
    /// The decision this event answers.
    pub decision_id: Option<String>,
    /// With a browser key and `user`: the identity token the site's back end signed for that
    /// user (`<expiry>.<hex HMAC-SHA256>`; see the README). Ignored for other keys; never stored.
    pub user_token: Option<String>,
}

/// `POST /v1/events` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventsOut {
    /// Newly accepted events (durable).
    pub accepted: usize,
    /// Events whose id was accepted before.
    pub duplicates: usize,
    /// Refused events.
    pub rejected: Vec<RejectedOut>,
    /// Dropped fields.
    pub dropped_fields: Vec<DroppedOut>,
}

/// A refused event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedOut {
    /// Index in the batch.
    pub index: usize,
    /// Stable code.
    pub code: String,
    /// Why.
    pub message: String,
    /// The field at fault (`events[3].type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A dropped field.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DroppedOut {
    /// Index in the batch.
    pub index: usize,
    /// The field, relative to the event (`properties.email`).
    pub field: String,
}

// ---- catalog ----

/// `PUT /v1/items` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemsIn {
    /// Items to add or replace (at most 10,000 per call).
    pub items: Vec<ItemIn>,
}

/// An item as sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemIn {
    /// 1–128 printable characters.
    pub id: String,
    /// `article`, `meditation`, `course`, `retreat`, `product`, ... (default `item`).
    pub kind: Option<String>,
    /// The title (default: the id).
    pub title: Option<String>,
    /// Goals and topics (at most 50, each 1–64 characters).
    pub tags: Option<Vec<String>>,
    /// Free-form attributes (`reading_minutes`, `level`, `price`, ...).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Default true.
    pub available: Option<bool>,
    /// RFC 3339.
    pub published_at: Option<String>,
    /// `foundational`, `contextual`, `emotional`: objects with a `headline` and any other copy.
    #[schema(value_type = Option<Object>)]
    pub variants: Option<Map<String, Value>>,
}

/// An item as returned.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemOut {
    /// Id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// Whether it may be recommended.
    pub available: bool,
    /// RFC 3339, if known.
    pub published_at: Option<String>,
    /// Copy variants.
    #[schema(value_type = Object)]
    pub variants: Map<String, Value>,
}

/// `PUT /v1/items` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpsertedOut {
    /// How many items were added or replaced.
    pub upserted: usize,
}

// ---- schemas ----

/// `PUT /v1/schemas/{type}` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaIn {
    /// `personalization`, `contextual`, `analytics`, `email` or `push`.
    pub purpose: String,
    /// Property name → `string`, `number`, `integer` or `boolean`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// 1–3650 days (default 90).
    pub retention_days: Option<u32>,
    /// What events of this type mean for personalization (needs purpose `personalization`).
    /// Without one they count as activity only.
    pub signal: Option<SignalIo>,
}

/// A declared type's meaning for personalization: events of the type then shape tag
/// affinities, the journey stage and (with an `item` and a positive strength) the trained
/// models, as built-in events do. Example, a quiz answer naming goals:
/// `{"tags_from_property": "answer", "strength": 2}`; a completed meditation:
/// `{"tags": ["meditation"], "item_tags": true, "strength": 1.5, "journey": "researching"}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalIo {
    /// Fixed tags the event speaks for (at most 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A declared `string` property whose value names tags, comma-separated (`"sleep, focus"`;
    /// matched to catalog tags as written or lower-cased with spaces as `_`; other values are
    /// ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags_from_property: Option<String>,
    /// Whether the tags of the event's item count too.
    #[serde(default)]
    pub item_tags: bool,
    /// How strongly, −5 to 5, not 0 (default 1; a view is 1, a click 1.5, a purchase 5, "not
    /// interested" −3). Negative: the person turns away from the tags.
    pub strength: Option<f32>,
    /// A step towards a journey stage: `researching` (like a deep read), `ready_to_buy` (like
    /// buying intent) or `customer` (like a purchase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journey: Option<String>,
}

/// A declared schema as returned.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SchemaOut {
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Purpose.
    pub purpose: String,
    /// Property name → type.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// Retention.
    pub retention_days: u32,
    /// What events of the type mean for personalization, if declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalIo>,
}

/// Every declared schema.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SchemasOut {
    /// Declared schemas, by type name.
    pub schemas: Vec<SchemaOut>,
}

// ---- identity ----

/// `POST /v1/identify` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifyIn {
    /// The device or browser id.
    pub anonymous_id: String,
    /// The person.
    pub user: String,
    /// Admin only: merge even when `anonymous_id` is a known person (otherwise a 409
    /// `identity_conflict`). The merge can be undone with `DELETE /v1/identify/{anonymous_id}`.
    #[serde(default)]
    pub force: bool,
    /// Required with a browser key: the identity token the site's back end signed for `user`.
    pub user_token: Option<String>,
}

/// `POST /v1/identify` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IdentifyOut {
    /// Events of the anonymous id that now belong to the person.
    pub merged_events: u64,
}

// ---- people ----

/// `PUT /v1/users/{id}/consent` body; unset purposes take the server's defaults.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentIn {
    /// Building and using a profile.
    pub personalization: Option<bool>,
    /// Location, weather and moment.
    pub contextual: Option<bool>,
    /// Keeping individual events for measurement.
    pub analytics: Option<bool>,
    /// Email.
    pub email: Option<bool>,
    /// Push notifications.
    pub push: Option<bool>,
}

/// Consent per purpose.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsentOut {
    /// Building and using a profile.
    pub personalization: bool,
    /// Location, weather and moment.
    pub contextual: bool,
    /// Keeping individual events for measurement.
    pub analytics: bool,
    /// Email.
    pub email: bool,
    /// Push notifications.
    pub push: bool,
}

/// Quiet hours, `HH:MM` in the person's time zone.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursIo {
    /// Start, `HH:MM`.
    pub start: String,
    /// End, `HH:MM`.
    pub end: String,
}

/// `PUT /v1/users/{id}/preferences` body (replaces the stored preferences).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesIn {
    /// Declared goals (tags), at most 20.
    pub goals: Option<Vec<String>>,
    /// Tags to see less of: items carrying them are never recommended. At most 50.
    pub less_of: Option<Vec<String>>,
    /// `on` or `off` (pause personalization).
    pub personalization: Option<String>,
    /// Quiet hours for notifications, or null.
    pub quiet_hours: Option<QuietHoursIo>,
    /// IANA time zone.
    pub timezone: Option<String>,
}

/// Preferences as returned.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferencesOut {
    /// Declared goals.
    pub goals: Vec<String>,
    /// Tags to see less of.
    pub less_of: Vec<String>,
    /// `on` or `off`.
    pub personalization: String,
    /// Quiet hours.
    pub quiet_hours: Option<QuietHoursIo>,
    /// Time zone.
    pub timezone: Option<String>,
}

/// A tag affinity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AffinityOut {
    /// The tag.
    pub tag: String,
    /// 0–1, the strongest is 1.
    pub weight: f32,
}

/// A recent engagement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecentOut {
    /// The item.
    pub item: String,
    /// When, RFC 3339.
    pub at: String,
}

/// `GET /v1/users/{id}`: what Attune knows and infers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserOut {
    /// The person's id.
    pub id: String,
    /// Effective consent.
    pub consent: ConsentOut,
    /// Whether the person answered (otherwise the server's defaults apply).
    pub consent_given: bool,
    /// Explicit preferences.
    pub preferences: PreferencesOut,
    /// `on` or `off`.
    pub personalization: String,
    /// `new`, `exploring`, `researching`, `ready_to_buy` or `customer`.
    pub journey_stage: String,
    /// 0–1.
    pub engagement: f32,
    /// Tag affinities, strongest first.
    pub affinities: Vec<AffinityOut>,
    /// Recent item ids, newest first.
    pub recent: Vec<String>,
    /// Recent items with when, newest first.
    pub recent_activity: Vec<RecentOut>,
    /// Anonymous ids merged into this person.
    pub aliases: Vec<String>,
    /// Stored events of the person and their aliases.
    pub events: u64,
    /// Folded events per channel where the person engaged (`web`, `app`, `email`, `push`,
    /// `in_person`, `offline_purchase`; channels without events are left out). Empty without
    /// personalization consent.
    #[schema(value_type = Object)]
    pub channels: Map<String, Value>,
    /// The IANA time zone Attune uses for the person's quiet hours, send hour and moment: their
    /// preferences' or, failing that, the latest `context.timezone` seen for them, in their
    /// events or their `POST /v1/decide` requests (with personalization consent); `null`: UTC.
    pub timezone: Option<String>,
    /// Where `timezone` comes from: `preferences`, `events`, `decide` or `none`.
    pub timezone_source: String,
    /// The local hour (0–23) notifications are planned for, learned from when the person
    /// engages; `null` until there is enough evidence (the default hour applies).
    pub send_hour: Option<u8>,
    /// RFC 3339.
    pub updated_at: String,
}

// ---- keys ----

/// `POST /v1/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyIn {
    /// A name for people.
    pub name: String,
    /// `events:write`, `decide`, `catalog:write`, `users:read`, `users:write`, `decisions:read`, `admin`.
    /// A browser key holds `events:write` and/or `decide` only (empty: both).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `server` (default: a back end's key) or `browser` (for pages: only the visitor's own events,
    /// decisions and consent, from `origins` only).
    pub kind: Option<String>,
    /// A browser key's allowed origins (`https://site.example`), 1–20.
    pub origins: Option<Vec<String>>,
}

/// `POST /v1/keys` answer: the key is shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyCreatedOut {
    /// The secret; only its hash is stored.
    pub key: String,
    /// The key's public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// `server` or `browser`.
    pub kind: String,
    /// A browser key's allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// A browser key's signing secret for identity tokens (`user_token`), shown this once; keep it
    /// on the site's back end. Derived from the server's secret and the key id; revoking the key
    /// ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

/// A key, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyOut {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Minted while the server ran open (no admin key): such a key authenticates nothing once an
    /// admin key is set; mint a new one.
    pub minted_open: bool,
    /// `server` or `browser`.
    pub kind: String,
    /// A browser key's allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

/// `GET /v1/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeysOut {
    /// Every key.
    pub keys: Vec<KeyOut>,
}

// ---- audit ----

/// An audit entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditOut {
    /// Entry id (time-ordered).
    pub id: String,
    /// The key that acted.
    pub key_id: String,
    /// What was done.
    pub action: String,
    /// To what (ids only).
    pub target: String,
    /// RFC 3339.
    pub at: String,
}

/// `GET /v1/audit`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditLogOut {
    /// Entries, oldest first.
    pub entries: Vec<AuditOut>,
}

/// A one-word status: `GET /healthz` and `GET /readyz`, and the deletions that return nothing else.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusOut {
    /// `ok` (alive), `ready` or `starting` (readiness); `deleted`, `cleared`, `revoked` or `unmerged`
    /// (what a deletion did).
    pub status: String,
}

// ---- privacy (issue 6) ----

/// `DELETE /v1/users/{id}/history/{item}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgetOut {
    /// Always true.
    pub forgotten: bool,
    /// The item.
    pub item: String,
    /// Stored events about the item (of the person and their aliases) that were deleted.
    pub events_deleted: u64,
    /// When the deleted bytes are purged from the store's files by (RFC 3339): within a minute
    /// of this time (batched purges; see SECURITY.md).
    pub purge_by: String,
}

/// An event as stored, in the shape of `POST /v1/events` (after minimization).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportEventOut {
    /// Event id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The person, when the event named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The device or browser, when the event named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// The item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// RFC 3339.
    pub ts: String,
    /// Channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The context kept.
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The properties kept.
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
    /// The decision it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

/// A merge log entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MergeOut {
    /// The device or browser id.
    pub anonymous_id: String,
    /// The person it was merged into.
    pub user: String,
    /// RFC 3339.
    pub at: String,
}

/// A forgotten item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForgottenOut {
    /// The item.
    pub item: String,
    /// When it was forgotten, RFC 3339.
    pub at: String,
}

/// A stored record of another component (decisions, exposures, notification plans): its key and
/// its value (JSON when it is JSON, else a string of hex under `hex`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    /// The record's key.
    pub key: String,
    /// The record.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// `GET /v1/users/{id}/export`: every stored record about the person and their aliases.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportOut {
    /// `attune-export-v1`.
    pub format: String,
    /// RFC 3339.
    pub exported_at: String,
    /// What Attune knows and infers (the profile view of `GET /v1/users/{id}`).
    pub user: UserOut,
    /// Consent as stored; null when the person never answered (server defaults apply).
    pub stored_consent: Option<ConsentOut>,
    /// Preferences as stored; null when none were set.
    pub stored_preferences: Option<PreferencesOut>,
    /// Anonymous ids merged into the person.
    pub aliases: Vec<String>,
    /// Every stored event of the person and their aliases, oldest first.
    pub events: Vec<ExportEventOut>,
    /// Merge log entries naming the person or an alias.
    pub merges: Vec<MergeOut>,
    /// Items the person asked to forget.
    pub forgotten: Vec<ForgottenOut>,
    /// Audit entries whose target names the person or an alias.
    pub audit: Vec<AuditOut>,
    /// Logged decisions and exposures.
    pub decisions: Vec<RecordOut>,
    /// Notification plans, and the email digests sent (a digest plan holds its `items` and
    /// `decision_id`).
    pub notifications: Vec<RecordOut>,
    /// The time zone last named by a decide request's `context.timezone` for the person or an
    /// alias (`{"timezone": …, "at_ms": …}`; kept only with personalization consent).
    pub decided_zones: Vec<RecordOut>,
}

/// An erasure receipt: counts only, no personal data.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptOut {
    /// `rcpt_…`; `GET /v1/erasures/{receipt_id}` returns the receipt again.
    pub receipt_id: String,
    /// RFC 3339.
    pub erased_at: String,
    /// Events deleted.
    pub events: u64,
    /// Anonymous ids erased with the person.
    pub aliases: u64,
    /// Other records deleted (consent, preferences, merges, forgotten items, decisions,
    /// exposures, notification plans, the time zone seen in decide requests).
    pub records: u64,
    /// Audit entries that named the person and now name this receipt.
    pub audit_redacted: u64,
    /// Whether the erasure was interrupted by a crash and completed at the next start.
    pub completed_at_start: bool,
    /// RFC 3339: the deleted bytes are purged from the store's files by then (within a minute of
    /// the erasure; everything is gone from every answer at once). Null in receipts of erasures
    /// made before purges were batched: those purged before answering.
    pub purge_by: Option<String>,
}

/// `DELETE /v1/users/{id}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErasedOut {
    /// Always true.
    pub erased: bool,
    /// The receipt.
    pub receipt: ReceiptOut,
}

/// `POST /v1/users/{id}/me-link` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeLinkOut {
    /// `/me?token=…`, relative to the server's base URL.
    pub url: String,
    /// When the link stops working, RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/admin/retention/sweep` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SweepOut {
    /// Events past their retention, deleted.
    pub events_deleted: u64,
    /// People whose profile was refolded without them.
    pub people_rebuilt: u64,
    /// Audit entries past the audit retention, deleted.
    pub audit_deleted: u64,
    /// Decisions and exposures past their retention, deleted.
    pub decisions_deleted: u64,
    /// Notification plans past their retention, deleted.
    pub notifications_deleted: u64,
    /// Time zones seen in decide requests past the decision retention, forgotten.
    pub decided_zones_deleted: u64,
    /// Events still held past their retention (0 after a sweep).
    pub held_past_retention: u64,
    /// When the deleted bytes are purged from the store's files by (RFC 3339), if the sweep
    /// deleted anything.
    pub purge_by: Option<String>,
}
