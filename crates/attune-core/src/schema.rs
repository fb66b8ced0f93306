//! The schema registry's entries: what a declared event type may carry, for which purpose, and for
//! how long. Built-in types have fixed schemas ([`crate::BuiltinType::schema`]).

use serde::{Deserialize, Serialize};

use crate::Purpose;

/// The type of one event property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PropType {
    /// A JSON string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number with no fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
}

impl PropType {
    /// The name used in `PUT /v1/schemas/{type}`.
    pub fn as_str(self) -> &'static str {
        match self {
            PropType::String => "string",
            PropType::Number => "number",
            PropType::Integer => "integer",
            PropType::Boolean => "boolean",
        }
    }

    /// Parses a property type name.
    pub fn parse(name: &str) -> Option<PropType> {
        [PropType::String, PropType::Number, PropType::Integer, PropType::Boolean]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// The default retention of behavioral events, in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// The longest retention a schema may ask for, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// A declared event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The purpose the data serves; the person's consent for it gates storage.
    pub purpose: Purpose,
    /// The allowed properties and their types; anything else is dropped.
    pub properties: Vec<(String, PropType)>,
    /// How long events of this type are kept, in days.
    pub retention_days: u32,
    /// What an event of this type means for personalization (declared types only; `None`: it
    /// counts as activity and nothing more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

/// What a declared event type means for personalization: which tags it speaks for, how strongly
/// (and in which direction), and where it moves the person's journey. Events of the type then
/// shape the profile (tag affinities, recent and consumed items, journey) and, when they name an
/// item and are positive, the trained models (an interaction of weight `strength`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The tags the event speaks for.
    pub tags: SignalTags,
    /// How strongly, on the built-in scale (a view is 1, a click 1.5, a purchase 5, "not
    /// interested" −3): positive for liking, negative for aversion. Between
    /// −[`MAX_SIGNAL_STRENGTH`] and [`MAX_SIGNAL_STRENGTH`], never 0.
    pub strength: f32,
    /// A step towards a journey stage, if the event says one.
    pub journey: Option<JourneySignal>,
}

/// The largest absolute strength of a declared signal (that of a purchase).
pub const MAX_SIGNAL_STRENGTH: f32 = 5.0;

/// Where a declared signal's tags come from; every source set contributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalTags {
    /// Fixed tags (a completed meditation speaks for `meditation`).
    pub fixed: Vec<String>,
    /// A declared string property whose value names tags, comma-separated (a quiz answer
    /// `"sleep, stress_relief"`). Values that are no catalog tag are ignored.
    pub from_property: Option<String>,
    /// The tags of the event's item.
    pub item: bool,
}

/// A step towards a journey stage that a declared event stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JourneySignal {
    /// Like a deep read (two recent ones make a person `researching`).
    Researching,
    /// Like buying intent (two recent ones make a person `ready_to_buy`).
    ReadyToBuy,
    /// Like a purchase without an item (the person is a `customer`).
    Customer,
}

impl JourneySignal {
    /// Every journey signal.
    pub const ALL: [JourneySignal; 3] =
        [JourneySignal::Researching, JourneySignal::ReadyToBuy, JourneySignal::Customer];

    /// The wire name (the stage it moves towards).
    pub fn as_str(self) -> &'static str {
        match self {
            JourneySignal::Researching => "researching",
            JourneySignal::ReadyToBuy => "ready_to_buy",
            JourneySignal::Customer => "customer",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<JourneySignal> {
        JourneySignal::ALL.into_iter().find(|j| j.as_str() == name)
    }
}

impl Schema {
    /// The declared type of property `name`, if any.
    pub fn property(&self, name: &str) -> Option<PropType> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}
