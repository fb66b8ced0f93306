//! Event validation: turns what a client sent into an [`Event`] that may be stored, or says
//! precisely why not. Data minimization happens here: undeclared properties, unknown context
//! fields and context that needs a consent the person has not given are dropped *before* anything
//! reaches disk, and every drop is reported.

use serde_json::{Map, Value};

use crate::{BuiltinType, Consent, Context, Event, EventType, PropType, PropValue, Schema, Subject, check_id};

/// An event as the client sent it, after JSON parsing but before any rule was applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEvent {
    /// `id`.
    pub id: Option<String>,
    /// `type`.
    pub kind: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `anonymous_id`.
    pub anonymous_id: Option<String>,
    /// `item`.
    pub item: Option<String>,
    /// `ts`, RFC 3339.
    pub ts: Option<String>,
    /// `channel`.
    pub channel: Option<String>,
    /// `context`.
    pub context: Map<String, Value>,
    /// `properties`.
    pub properties: Map<String, Value>,
    /// `decision_id`.
    pub decision_id: Option<String>,
}

/// Why an event was refused. The `code` is stable and appears in the API's `rejected` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable snake_case code.
    pub code: RejectCode,
    /// The field at fault, relative to the event (`properties.score`).
    pub field: Option<String>,
    /// A sentence a person understands.
    pub message: String,
}

/// The stable codes of event rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// A required field is absent.
    MissingField,
    /// An id is empty, too long or not printable.
    InvalidId,
    /// The type is neither built in nor declared.
    UnknownEventType,
    /// Neither `user` nor `anonymous_id`, or both.
    InvalidSubject,
    /// `ts` is not RFC 3339 or lies in the future.
    InvalidTimestamp,
    /// A declared property has the wrong type or an impossible value.
    InvalidProperty,
    /// A context field has the wrong type.
    InvalidContext,
    /// The event has a field the API does not define.
    UnknownField,
    /// A field has the wrong JSON type (or the event is not an object).
    InvalidType,
    /// `channel` is not one of the channels Attune knows.
    InvalidChannel,
}

impl RejectCode {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidId => "invalid_id",
            RejectCode::UnknownEventType => "unknown_event_type",
            RejectCode::InvalidSubject => "invalid_subject",
            RejectCode::InvalidTimestamp => "invalid_timestamp",
            RejectCode::InvalidProperty => "invalid_property",
            RejectCode::InvalidContext => "invalid_context",
            RejectCode::UnknownField => "unknown_field",
            RejectCode::InvalidType => "invalid_type",
            RejectCode::InvalidChannel => "invalid_channel",
        }
    }
}

/// A validated event, the fields that were dropped on the way, and the type's schema facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The event to store.
    pub event: Event,
    /// Dropped fields, relative to the event (`properties.email`, `context.geo`).
    pub dropped: Vec<String>,
    /// The type's purpose and retention.
    pub schema: Schema,
}

/// How far in the future an event's `ts` may lie (clock skew between a site and Attune).
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 3600 * 1000;

fn reject(code: RejectCode, field: &str, message: impl Into<String>) -> Rejection {
    Rejection { code, field: Some(field.to_owned()), message: message.into() }
}

fn checked_id(value: Option<String>, field: &str) -> Result<Option<String>, Rejection> {
    match value {
        None => Ok(None),
        Some(id) => match check_id(&id) {
            Ok(()) => Ok(Some(id)),
            Err(err) => Err(reject(RejectCode::InvalidId, field, format!("`{field}` {err}."))),
        },
    }
}

/// Validates one event.
///
/// `declared` looks up declared event types; `consent` is the person's consent (it decides which
/// context fields may be kept); `now_ms` is the server's time, used for a missing `ts` and to
/// refuse events from the future.
pub fn validate_event(
    raw: RawEvent,
    declared: &dyn Fn(&str) -> Option<Schema>,
    consent: &Consent,
    now_ms: i64,
) -> Result<Validated, Rejection> {
    let id = checked_id(raw.id, "id")?
        .ok_or_else(|| reject(RejectCode::MissingField, "id", "Every event needs an `id`."))?;
    let type_name = raw.kind.ok_or_else(|| reject(RejectCode::MissingField, "type", "Every event needs a `type`."))?;
    let (kind, schema) = match BuiltinType::parse(&type_name) {
        Some(builtin) => (EventType::Builtin(builtin), builtin.schema()),
        None => match declared(&type_name) {
            Some(schema) => (EventType::Declared(type_name), schema),
            None => {
                return Err(reject(
                    RejectCode::UnknownEventType,
                    "type",
                    format!(
                        "`{}` is not a built-in event type; declare it first with PUT /v1/schemas/{{type}}.",
                        truncate(&type_name)
                    ),
                ));
            }
        },
    };
    let user = checked_id(raw.user, "user")?;
    let anonymous_id = checked_id(raw.anonymous_id, "anonymous_id")?;
    let subject = match (user, anonymous_id) {
        (Some(user), None) => Subject::User(user),
        (None, Some(anonymous_id)) => Subject::Anonymous(anonymous_id),
        (None, None) => {
            return Err(reject(
                RejectCode::InvalidSubject,
                "user",
                "An event needs exactly one of `user` or `anonymous_id`; it has neither.",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(reject(
                RejectCode::InvalidSubject,
                "anonymous_id",
                "An event needs exactly one of `user` or `anonymous_id`; it has both (use POST /v1/identify to link them).",
            ));
        }
    };
    let item = checked_id(raw.item, "item")?;
    if item.is_none() && kind.builtin().is_some_and(BuiltinType::needs_item) {
        return Err(reject(RejectCode::MissingField, "item", format!("A `{}` event needs an `item`.", kind.as_str())));
    }
    let ts_ms = match raw.ts {
        None => now_ms,
        Some(ts) => parse_ts_ms(&ts).ok_or_else(|| {
            reject(
                RejectCode::InvalidTimestamp,
                "ts",
                "`ts` must be an RFC 3339 timestamp such as 2026-11-28T07:30:00Z.",
            )
        })?,
    };
    if ts_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(reject(RejectCode::InvalidTimestamp, "ts", "`ts` lies more than a day in the future."));
    }
    if ts_ms < 0 {
        return Err(reject(RejectCode::InvalidTimestamp, "ts", "`ts` lies before 1970."));
    }
    let channel = match raw.channel {
        None => None,
        Some(name) => match crate::Channel::parse(&name) {
            Some(crate::Channel::InPerson | crate::Channel::OfflinePurchase)
                if matches!(subject, Subject::Anonymous(_)) =>
            {
                return Err(reject(
                    RejectCode::InvalidSubject,
                    "anonymous_id",
                    "In-person and offline events name a known person: send `user`, not `anonymous_id`.",
                ));
            }
            Some(channel) => Some(channel.as_str().to_owned()),
            None => {
                return Err(reject(
                    RejectCode::InvalidChannel,
                    "channel",
                    format!("`channel` is one of {}.", crate::Channel::names()),
                ));
            }
        },
    };
    let decision_id = checked_id(raw.decision_id, "decision_id")?;

    let mut dropped = Vec::new();
    let context = validate_context(raw.context, consent, &mut dropped)?;
    let properties = validate_properties(kind.builtin(), &schema, raw.properties, &mut dropped)?;

    let event = Event { id, kind, subject, item, ts_ms, channel, context, properties, decision_id };
    Ok(Validated { event, dropped, schema })
}

/// Parses an RFC 3339 timestamp to milliseconds since the Unix epoch.
pub fn parse_ts_ms(ts: &str) -> Option<i64> {
    let timestamp: jiff::Timestamp = ts.parse().ok()?;
    Some(timestamp.as_millisecond())
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 64 { s.to_owned() } else { s.chars().take(64).collect::<String>() + "…" }
}

fn validate_context(
    context: Map<String, Value>,
    consent: &Consent,
    dropped: &mut Vec<String>,
) -> Result<Context, Rejection> {
    let mut out = Context::default();
    for (key, value) in context {
        let slot = match key.as_str() {
            "device" => &mut out.device,
            "timezone" => &mut out.timezone,
            "geo" => &mut out.geo,
            "weather" => &mut out.weather,
            "local_time" => &mut out.local_time,
            "page" => &mut out.page,
            "locale" => &mut out.locale,
            _ => {
                dropped.push(format!("context.{key}"));
                continue;
            }
        };
        if Context::CONTEXTUAL_FIELDS.contains(&key.as_str()) && !consent.contextual {
            dropped.push(format!("context.{key}"));
            continue;
        }
        let field = || format!("context.{key}");
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text,
            _ => {
                let field = field();
                return Err(reject(RejectCode::InvalidContext, &field, format!("`{field}` must be a string.")));
            }
        };
        if text.len() > 256 && text.chars().count() > 256 {
            let field = field();
            return Err(reject(
                RejectCode::InvalidContext,
                &field,
                format!("`{field}` is longer than 256 characters."),
            ));
        }
        if key == "timezone" && !is_time_zone(&text) {
            return Err(reject(
                RejectCode::InvalidContext,
                &field(),
                "`context.timezone` must be an IANA time zone such as Europe/Berlin.",
            ));
        }
        if key == "local_time" && text.parse::<jiff::Timestamp>().is_err() {
            return Err(reject(
                RejectCode::InvalidContext,
                &field(),
                "`context.local_time` must be an RFC 3339 timestamp with offset.",
            ));
        }
        *slot = Some(text);
    }
    Ok(out)
}

/// Whether `name` is an IANA time zone. Events repeat a handful of zones, so each thread
/// remembers the last zones it found valid instead of asking the time zone database every time.
fn is_time_zone(name: &str) -> bool {
    thread_local! {
        static KNOWN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    const REMEMBERED: usize = 16;
    KNOWN.with_borrow_mut(|known| {
        if let Some(at) = known.iter().position(|zone| zone == name) {
            known[..=at].rotate_right(1);
            return true;
        }
        if jiff::tz::TimeZone::get(name).is_err() {
            return false;
        }
        known.truncate(REMEMBERED - 1);
        known.insert(0, name.to_owned());
        true
    })
}

fn validate_properties(
    builtin: Option<BuiltinType>,
    schema: &Schema,
    properties: Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<Vec<(String, PropValue)>, Rejection> {
    let mut out = Vec::with_capacity(properties.len());
    for (key, value) in properties {
        let Some(prop_type) = schema.property(&key) else {
            dropped.push(format!("properties.{key}"));
            continue;
        };
        if value.is_null() {
            continue;
        }
        let field = format!("properties.{key}");
        let typed = typed_value(&value, prop_type).ok_or_else(|| {
            reject(RejectCode::InvalidProperty, &field, format!("`{field}` must be of type {}.", prop_type.as_str()))
        })?;
        if let PropValue::Str(text) = &typed
            && text.chars().count() > 1024
        {
            return Err(reject(
                RejectCode::InvalidProperty,
                &field,
                format!("`{field}` is longer than 1024 characters."),
            ));
        }
        out.push((key, typed));
    }
    if let Some(builtin) = builtin {
        check_builtin_values(builtin, &out)?;
    }
    Ok(out)
}

fn typed_value(value: &Value, prop_type: PropType) -> Option<PropValue> {
    match (prop_type, value) {
        (PropType::String, Value::String(s)) => Some(PropValue::Str(s.clone())),
        (PropType::Boolean, Value::Bool(b)) => Some(PropValue::Bool(*b)),
        (PropType::Integer, Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15).map(|x| x as i64))
            .map(PropValue::Int),
        (PropType::Number, Value::Number(n)) => n.as_f64().filter(|x| x.is_finite()).map(PropValue::Num),
        _ => None,
    }
}

fn check_builtin_values(builtin: BuiltinType, props: &[(String, PropValue)]) -> Result<(), Rejection> {
    let get = |name: &str| props.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_f64());
    let range = |name: &str, lo: f64, hi: f64, required: bool| -> Result<(), Rejection> {
        let field = format!("properties.{name}");
        match get(name) {
            None if required => Err(reject(
                RejectCode::InvalidProperty,
                &field,
                format!("A `{}` event needs `{field}`.", builtin.as_str()),
            )),
            Some(x) if !(lo..=hi).contains(&x) => {
                Err(reject(RejectCode::InvalidProperty, &field, format!("`{field}` must be between {lo} and {hi}.")))
            }
            _ => Ok(()),
        }
    };
    const DAY_MS: f64 = 86_400_000.0;
    match builtin {
        BuiltinType::Survey => range("score", 1.0, 10.0, true),
        BuiltinType::Rating => range("rating", 0.0, 10.0, true),
        BuiltinType::Dwell => {
            range("dwell_ms", 0.0, DAY_MS, true)?;
            range("scroll_depth", 0.0, 1.0, false)
        }
        BuiltinType::View => {
            range("dwell_ms", 0.0, DAY_MS, false)?;
            range("scroll_depth", 0.0, 1.0, false)
        }
        BuiltinType::Purchase | BuiltinType::AddToCart => {
            range("value", 0.0, 1.0e9, false)?;
            range("quantity", 1.0, 1.0e6, false)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_316_800_000; // 2025-11-28T08:00:00Z

    fn raw(value: Value) -> RawEvent {
        let obj = value.as_object().unwrap().clone();
        let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let m = |k: &str| obj.get(k).and_then(Value::as_object).cloned().unwrap_or_default();
        RawEvent {
            id: s("id"),
            kind: s("type"),
            user: s("user"),
            anonymous_id: s("anonymous_id"),
            item: s("item"),
            ts: s("ts"),
            channel: s("channel"),
            context: m("context"),
            properties: m("properties"),
            decision_id: s("decision_id"),
        }
    }

    fn no_declared(_: &str) -> Option<Schema> {
        None
    }

    fn check(value: Value) -> Result<Validated, Rejection> {
        validate_event(raw(value), &no_declared, &Consent::default(), NOW)
    }

    fn code(value: Value) -> &'static str {
        check(value).unwrap_err().code.as_str()
    }

    #[test]
    fn accepts_the_contract_example_and_minimizes() {
        let validated = check(json!({"id": "evt-1", "type": "view", "user": "u-42", "item": "art-1",
            "ts": "2025-11-28T07:30:00Z", "channel": "web",
            "context": {"device": "mobile", "timezone": "Europe/Berlin", "geo": "DE", "weather": "rain"},
            "properties": {"dwell_ms": 53000, "scroll_depth": 0.8, "email": "x@y"}}))
        .unwrap();
        assert_eq!(validated.event.context.device.as_deref(), Some("mobile"));
        assert_eq!(validated.event.context.geo, None, "no contextual consent by default");
        assert_eq!(validated.dropped, vec!["context.geo", "context.weather", "properties.email"]);
        assert_eq!(validated.event.prop_f64("dwell_ms"), Some(53000.0));
    }

    #[test]
    fn rejections_have_stable_codes() {
        assert_eq!(code(json!({"type": "view", "user": "u", "item": "i"})), "missing_field");
        assert_eq!(code(json!({"id": "", "type": "view", "user": "u", "item": "i"})), "invalid_id");
        assert_eq!(code(json!({"id": "e", "type": "teleport", "user": "u"})), "unknown_event_type");
        assert_eq!(code(json!({"id": "e", "type": "view", "item": "i"})), "invalid_subject");
        assert_eq!(
            code(json!({"id": "e", "type": "view", "user": "u", "anonymous_id": "a", "item": "i"})),
            "invalid_subject"
        );
        assert_eq!(code(json!({"id": "e", "type": "view", "user": "u"})), "missing_field");
        assert_eq!(
            code(json!({"id": "e", "type": "view", "user": "u", "item": "i", "ts": "yesterday"})),
            "invalid_timestamp"
        );
        assert_eq!(
            code(json!({"id": "e", "type": "view", "user": "u", "item": "i", "ts": "2099-01-01T00:00:00Z"})),
            "invalid_timestamp"
        );
        assert_eq!(code(json!({"id": "e", "type": "survey", "user": "u"})), "invalid_property");
        assert_eq!(
            code(json!({"id": "e", "type": "survey", "user": "u", "properties": {"score": 11}})),
            "invalid_property"
        );
        assert_eq!(
            code(json!({"id": "e", "type": "survey", "user": "u", "properties": {"score": "9"}})),
            "invalid_property"
        );
        assert_eq!(
            code(json!({"id": "e", "type": "view", "user": "u", "item": "i", "context": {"timezone": "Mars/Olympus"}})),
            "invalid_context"
        );
        assert_eq!(
            code(json!({"id": "e", "type": "view", "user": "u", "item": "i", "context": {"device": 3}})),
            "invalid_context"
        );
        let channel = check(json!({"id": "e", "type": "view", "user": "u", "item": "i", "channel": "fax"}));
        assert_eq!(channel.as_ref().unwrap_err().code.as_str(), "invalid_channel");
        assert_eq!(channel.unwrap_err().field.as_deref(), Some("channel"));
        let in_person = check(json!({"id": "e", "type": "purchase", "user": "u", "item": "i", "channel": "in_person"}));
        assert_eq!(in_person.unwrap().event.channel(), crate::Channel::InPerson);
        assert_eq!(
            code(json!({"id": "e", "type": "view", "anonymous_id": "a", "item": "i", "channel": "offline_purchase"})),
            "invalid_subject"
        );
    }

    #[test]
    fn declared_types_use_their_schema() {
        let schema = Schema {
            purpose: crate::Purpose::Personalization,
            properties: vec![("minutes".into(), PropType::Number)],
            retention_days: 30,
            signal: None,
        };
        let declared = |name: &str| (name == "meditation_done").then(|| schema.clone());
        let validated = validate_event(
            raw(json!({"id": "e", "type": "meditation_done", "anonymous_id": "a-1",
                "properties": {"minutes": 10, "mood": "calm"}})),
            &declared,
            &Consent::default(),
            NOW,
        )
        .unwrap();
        assert_eq!(validated.schema.retention_days, 30);
        assert_eq!(validated.dropped, vec!["properties.mood"]);
        assert_eq!(validated.event.ts_ms, NOW, "a missing ts means now");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(
            id in proptest::option::of(".{0,140}"),
            kind in proptest::option::of("[a-z_]{0,12}|view|survey|purchase"),
            user in proptest::option::of(".{0,10}"),
            anon in proptest::option::of(".{0,10}"),
            item in proptest::option::of(".{0,10}"),
            ts in proptest::option::of(".{0,30}|2025-11-2[0-9]T0[0-9]:00:00Z"),
            prop_key in "[a-z_]{0,10}|score|value|dwell_ms|scroll_depth",
            prop_num in proptest::num::f64::ANY,
            prop_str in ".{0,20}",
            tz in ".{0,20}|Europe/Berlin",
        ) {
            let mut properties = Map::new();
            if let Some(n) = serde_json::Number::from_f64(prop_num) {
                properties.insert(prop_key.clone(), Value::Number(n));
            }
            properties.insert(format!("{prop_key}_s"), Value::String(prop_str));
            let mut context = Map::new();
            context.insert("timezone".into(), Value::String(tz));
            let raw = RawEvent { id, kind, user, anonymous_id: anon, item, ts, channel: None, context, properties, decision_id: None };
            match validate_event(raw.clone(), &no_declared, &Consent::default(), NOW) {
                Ok(v) => {
                    // Whatever passes satisfies the invariants the store relies on.
                    proptest::prop_assert!(check_id(&v.event.id).is_ok());
                    proptest::prop_assert!(check_id(v.event.subject.id()).is_ok());
                    proptest::prop_assert!(v.event.ts_ms <= NOW + MAX_FUTURE_SKEW_MS);
                    for (name, _) in &v.event.properties {
                        proptest::prop_assert!(v.schema.property(name).is_some());
                    }
                    proptest::prop_assert!(v.event.context.geo.is_none());
                }
                Err(rejection) => {
                    proptest::prop_assert!(!rejection.message.is_empty());
                    proptest::prop_assert!(rejection.field.is_some());
                }
            }
        }
    }
}
