//! Events: what people do. An [`Event`] here has passed validation (see [`crate::validate`]); the
//! store only ever receives these.

use serde::{Deserialize, Serialize};

use crate::{PropType, Purpose, Schema, schema::DEFAULT_RETENTION_DAYS};

/// The built-in event types of `API.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BuiltinType {
    /// The person saw an item's page.
    View,
    /// The person clicked a recommended item.
    Click,
    /// The person put an item in a cart.
    AddToCart,
    /// The person bought an item (`properties.value`).
    Purchase,
    /// The person rated an item (`properties.rating`).
    Rating,
    /// Time spent on an item (`dwell_ms`, `scroll_depth`).
    Dwell,
    /// The person dismissed an item: never show it again.
    NotInterested,
    /// A search (`properties.query`).
    Search,
    /// "How well does this feel tailored to you?" (`properties.score`, 1–10).
    Survey,
    /// An email was opened.
    EmailOpen,
    /// A notification was opened.
    NotificationOpen,
}

impl BuiltinType {
    /// Every built-in type.
    pub const ALL: [BuiltinType; 11] = [
        BuiltinType::View,
        BuiltinType::Click,
        BuiltinType::AddToCart,
        BuiltinType::Purchase,
        BuiltinType::Rating,
        BuiltinType::Dwell,
        BuiltinType::NotInterested,
        BuiltinType::Search,
        BuiltinType::Survey,
        BuiltinType::EmailOpen,
        BuiltinType::NotificationOpen,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinType::View => "view",
            BuiltinType::Click => "click",
            BuiltinType::AddToCart => "add_to_cart",
            BuiltinType::Purchase => "purchase",
            BuiltinType::Rating => "rating",
            BuiltinType::Dwell => "dwell",
            BuiltinType::NotInterested => "not_interested",
            BuiltinType::Search => "search",
            BuiltinType::Survey => "survey",
            BuiltinType::EmailOpen => "email_open",
            BuiltinType::NotificationOpen => "notification_open",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<BuiltinType> {
        BuiltinType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether events of this type must name an `item`.
    pub fn needs_item(self) -> bool {
        matches!(
            self,
            BuiltinType::View
                | BuiltinType::Click
                | BuiltinType::AddToCart
                | BuiltinType::Purchase
                | BuiltinType::Rating
                | BuiltinType::Dwell
                | BuiltinType::NotInterested
        )
    }

    /// The fixed schema of a built-in type: purpose, allowed properties, retention.
    pub fn schema(self) -> Schema {
        use PropType::*;
        let props: &[(&str, PropType)] = match self {
            BuiltinType::View => &[("dwell_ms", Number), ("scroll_depth", Number), ("position", Integer)],
            BuiltinType::Click => &[("position", Integer)],
            BuiltinType::AddToCart => &[("quantity", Integer), ("value", Number), ("currency", String)],
            BuiltinType::Purchase => &[("value", Number), ("quantity", Integer), ("currency", String)],
            BuiltinType::Rating => &[("rating", Number)],
            BuiltinType::Dwell => &[("dwell_ms", Number), ("scroll_depth", Number)],
            BuiltinType::NotInterested => &[("reason", String)],
            BuiltinType::Search => &[("query", String), ("results", Integer)],
            BuiltinType::Survey => &[("score", Integer), ("comment", String)],
            BuiltinType::EmailOpen | BuiltinType::NotificationOpen => &[("campaign", String)],
        };
        Schema {
            purpose: Purpose::Personalization,
            properties: props.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
            retention_days: DEFAULT_RETENTION_DAYS,
            signal: None,
        }
    }
}

/// An event's type: built in, or declared with `PUT /v1/schemas/{type}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// One of [`BuiltinType`].
    Builtin(BuiltinType),
    /// A declared type, by name.
    Declared(String),
}

impl EventType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Builtin(t) => t.as_str(),
            EventType::Declared(name) => name,
        }
    }

    /// The built-in type, if this is one.
    pub fn builtin(&self) -> Option<BuiltinType> {
        match self {
            EventType::Builtin(t) => Some(*t),
            EventType::Declared(_) => None,
        }
    }
}

/// Who did it: a known person, or a device/browser not yet tied to one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subject {
    /// A known person (`user`).
    User(String),
    /// A device or browser (`anonymous_id`).
    Anonymous(String),
}

impl Subject {
    /// The id, whichever kind it is. Users and anonymous ids share one namespace of people.
    pub fn id(&self) -> &str {
        match self {
            Subject::User(id) | Subject::Anonymous(id) => id,
        }
    }
}

/// A typed property value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PropValue {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

impl PropValue {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PropValue::Num(x) => Some(*x),
            PropValue::Int(x) => Some(*x as f64),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PropValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The context an event happened in. Which fields are kept depends on consent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// `mobile`, `desktop`, `tablet`, ...
    pub device: Option<String>,
    /// An IANA time zone name.
    pub timezone: Option<String>,
    /// A coarse location (country or region code). Needs `contextual` consent.
    pub geo: Option<String>,
    /// The weather where the person is. Needs `contextual` consent.
    pub weather: Option<String>,
    /// The person's local time, as they sent it.
    pub local_time: Option<String>,
    /// The page or screen.
    pub page: Option<String>,
    /// The person's locale (`de-DE`).
    pub locale: Option<String>,
}

impl Context {
    /// The context fields that need `contextual` consent.
    pub const CONTEXTUAL_FIELDS: [&'static str; 2] = ["geo", "weather"];
}

/// A validated event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The client's event id; a second event with the same id is a duplicate.
    pub id: String,
    /// The type.
    pub kind: EventType,
    /// Who.
    pub subject: Subject,
    /// The item it is about, if any.
    pub item: Option<String>,
    /// When it happened (milliseconds since the Unix epoch).
    pub ts_ms: i64,
    /// The [`crate::Channel`]'s wire name (`web`, `email`, `in_person`, ...); validation admits
    /// only those. Stored as text, so events stored before channels were checked still decode.
    pub channel: Option<String>,
    /// The context, already minimized by consent.
    pub context: Context,
    /// The properties the type declares, typed.
    pub properties: Vec<(String, PropValue)>,
    /// The decision this event answers, for attribution.
    pub decision_id: Option<String>,
}

impl Event {
    /// A property by name.
    pub fn prop(&self, name: &str) -> Option<&PropValue> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The event's channel (`web` when it names none or one from before channels were checked).
    pub fn channel(&self) -> crate::Channel {
        self.channel.as_deref().and_then(crate::Channel::parse).unwrap_or_default()
    }

    /// A numeric property by name.
    pub fn prop_f64(&self, name: &str) -> Option<f64> {
        self.prop(name).and_then(PropValue::as_f64)
    }
}
