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
}

impl Schema {
    /// The declared type of property `name`, if any.
    pub fn property(&self, name: &str) -> Option<PropType> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}
