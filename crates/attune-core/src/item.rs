//! Catalog items.

use serde::{Deserialize, Serialize};

/// The copy variants an item may carry, one per journey need.
pub const VARIANT_NAMES: [&str; 3] = ["foundational", "contextual", "emotional"];

/// A catalog item: an article, a meditation, a course, a retreat, a product...
///
/// Stored as JSON (attributes and variants are free-form objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The item's id (1–128 printable characters).
    pub id: String,
    /// What kind of thing it is (`article`, `product`, ...); free text.
    pub kind: String,
    /// The title shown in explanations ("Because you read “…”").
    pub title: String,
    /// Tags: goals and topics.
    pub tags: Vec<String>,
    /// Attributes (reading minutes, level, price, ...): a JSON object.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// `false` once deleted or withdrawn: never recommended again.
    pub available: bool,
    /// When it was published, if known.
    pub published_at: Option<jiff::Timestamp>,
    /// Copy variants by name (`foundational`, `contextual`, `emotional`): JSON objects.
    pub variants: serde_json::Map<String, serde_json::Value>,
}

impl Item {
    /// Whether the item is something one buys (it has a price or is a product, course or retreat).
    pub fn is_purchasable(&self) -> bool {
        self.attributes.contains_key("price") || matches!(self.kind.as_str(), "product" | "course" | "retreat")
    }
}
