//! The catalog: items (interned to dense indices with their tags, so profiles and models work
//! with `u32`s instead of strings) and the declared event schemas, in memory and written
//! through to `Table::Items` and `Table::Schemas`. What a declared schema's signal means for one
//! event is resolved in `signals.rs`.

use std::sync::Arc;

use attune_core::{Item, ItemIdx, Schema, TagIdx};
use attune_store::{Store, Table};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use rustc_hash::FxHashMap;

use crate::error::{Invalid, Result, UserError};
use crate::records::{scan_json, to_json};

/// The catalog component: the item index and the schemas, with their store access.
pub struct Catalog {
    store: Arc<dyn Store>,
    index: RwLock<ItemIndex>,
    pub(crate) schemas: RwLock<FxHashMap<String, Schema>>,
}

impl Catalog {
    /// Loads the stored items and schemas.
    pub(crate) fn open(store: Arc<dyn Store>) -> Result<Catalog> {
        let items: Vec<(String, Item)> = scan_json(&*store, Table::Items, "", "item")?;
        let schemas: Vec<(String, Schema)> = scan_json(&*store, Table::Schemas, "", "schema")?;
        let mut index = ItemIndex::default();
        for (_, item) in items {
            index.upsert(item);
        }
        Ok(Catalog { store, index: RwLock::new(index), schemas: RwLock::new(schemas.into_iter().collect()) })
    }

    /// Reads the item index.
    pub fn read(&self) -> RwLockReadGuard<'_, ItemIndex> {
        self.index.read()
    }

    /// Changes the item index (interning, items another server stored).
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, ItemIndex> {
        self.index.write()
    }

    /// Adds or replaces items, durably. Returns how many.
    pub fn upsert_items(&self, items: Vec<Item>) -> Result<usize> {
        let entries: Vec<(String, Vec<u8>)> = items.iter().map(|item| (item.id.clone(), to_json(item))).collect();
        self.store.put_many(Table::Items, &entries)?;
        let mut index = self.index.write();
        let n = items.len();
        for item in items {
            index.upsert(item);
        }
        Ok(n)
    }

    /// Applies items another server stored; returns how many changed here.
    pub(crate) fn apply_stored_items(&self, items: Vec<Item>) -> usize {
        let mut index = self.index.write();
        let mut n = 0;
        for item in items {
            let same = index.lookup(&item.id).and_then(|idx| index.item(idx)).is_some_and(|known| **known == item);
            if !same {
                index.upsert(item);
                n += 1;
            }
        }
        n
    }

    /// An item by id.
    pub fn item(&self, id: &str) -> Option<Arc<Item>> {
        let index = self.index.read();
        index.lookup(id).and_then(|idx| index.item(idx).cloned())
    }

    /// Marks an item unavailable (it is never recommended again; history keeps it).
    pub fn withdraw_item(&self, id: &str) -> Result<()> {
        let mut index = self.index.write();
        let item = index.withdraw(id).ok_or_else(|| UserError::not_found("item", id))?;
        self.store.put(Table::Items, id, &to_json(&*item))?;
        Ok(())
    }

    /// The index of `id`, interning it if it is new (an item seen in an event first).
    pub(crate) fn intern_item(&self, id: &str) -> ItemIdx {
        if let Some(idx) = self.index.read().lookup(id) {
            return idx;
        }
        self.index.write().intern_item(id)
    }

    /// Declares (or redeclares) an event type; returns whether its signal changed (the
    /// profiles its stored events shaped must then be refolded).
    pub fn put_schema(&self, name: &str, schema: Schema) -> Result<bool> {
        if attune_core::BuiltinType::parse(name).is_some() {
            return Err(UserError::Invalid {
                kind: Invalid::BuiltinType,
                field: None,
                message: format!("`{name}` is a built-in event type; its schema is fixed."),
            }
            .into());
        }
        self.store.put(Table::Schemas, name, &to_json(&schema))?;
        let mut schemas = self.schemas.write();
        let before = schemas.get(name).and_then(|s| s.signal.clone());
        let changed = before != schema.signal;
        schemas.insert(name.to_owned(), schema);
        Ok(changed)
    }

    /// A declared schema.
    pub fn schema(&self, name: &str) -> Option<Schema> {
        self.schemas.read().get(name).cloned()
    }

    /// Every declared schema, by name.
    pub fn schemas(&self) -> Vec<(String, Schema)> {
        let mut all: Vec<_> = self.schemas.read().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Applies schemas another server stored (`changed`) or deleted (`removed`); returns how
    /// many changed here and the types whose signal changed.
    pub(crate) fn apply_stored_schemas(
        &self,
        changed: Vec<(String, Schema)>,
        removed: Vec<String>,
    ) -> (usize, Vec<String>) {
        let mut n = 0;
        let mut signal_changed = Vec::new();
        let mut schemas = self.schemas.write();
        for (name, schema) in changed {
            if schemas.get(&name) != Some(&schema) {
                if schemas.get(&name).and_then(|s| s.signal.as_ref()) != schema.signal.as_ref() {
                    signal_changed.push(name.clone());
                }
                schemas.insert(name, schema);
                n += 1;
            }
        }
        for name in removed {
            if let Some(schema) = schemas.remove(&name) {
                n += 1;
                if schema.signal.is_some() {
                    signal_changed.push(name);
                }
            }
        }
        (n, signal_changed)
    }
}

/// What decisions need to know about an item on the hot path, precomputed at upsert so that no
/// JSON attribute is read per item per decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemTraits {
    /// In the catalog and available.
    pub available: bool,
    /// Something one buys (a price, or a product, course or retreat).
    pub purchasable: bool,
    /// Educational content: an article, course, meditation or guide.
    pub educational: bool,
    /// `attributes.level == "beginner"`.
    pub beginner: bool,
    /// When it was published (ms), if known.
    pub published_ms: Option<i64>,
}

impl ItemTraits {
    fn of(item: &Item) -> ItemTraits {
        ItemTraits {
            available: item.available,
            purchasable: item.is_purchasable(),
            educational: matches!(item.kind.as_str(), "article" | "course" | "meditation" | "guide"),
            beginner: item.attributes.get("level").and_then(|l| l.as_str()) == Some("beginner"),
            published_ms: item.published_at.map(|p| p.as_millisecond()),
        }
    }
}

/// Items and tags by index. Items seen only in events (not yet in the catalog) have an index and
/// no [`Item`].
#[derive(Debug, Default)]
pub struct ItemIndex {
    traits: Vec<ItemTraits>,
    ids: Vec<Arc<str>>,
    by_id: FxHashMap<Arc<str>, ItemIdx>,
    items: Vec<Option<Arc<Item>>>,
    item_tags: Vec<Vec<TagIdx>>,
    /// `item_tags` flattened (CSR) for the decide loop's locality: tags of item `i` are
    /// `tag_flat[tag_offsets[i]..tag_offsets[i + 1]]`.
    tag_offsets: Vec<u32>,
    tag_flat: Vec<TagIdx>,
    tags: Vec<Arc<str>>,
    tag_by_name: FxHashMap<Arc<str>, TagIdx>,
    /// Moves on with every change of an item (a new one, an upsert, a withdrawal): what was
    /// computed from one generation (the general ranking's order) holds until the next.
    generation: u64,
}

impl ItemIndex {
    /// The index of `id`, creating one for an item not seen before.
    pub fn intern_item(&mut self, id: &str) -> ItemIdx {
        if let Some(&idx) = self.by_id.get(id) {
            return idx;
        }
        self.generation += 1;
        let idx = ItemIdx(self.ids.len() as u32);
        let id: Arc<str> = Arc::from(id);
        self.ids.push(Arc::clone(&id));
        self.by_id.insert(id, idx);
        self.items.push(None);
        self.item_tags.push(Vec::new());
        self.traits.push(ItemTraits::default());
        if self.tag_offsets.is_empty() {
            self.tag_offsets.push(0);
        }
        self.tag_offsets.push(self.tag_flat.len() as u32);
        idx
    }

    /// The index of a tag, creating one for a tag not seen before.
    pub fn intern_tag(&mut self, name: &str) -> TagIdx {
        if let Some(&idx) = self.tag_by_name.get(name) {
            return idx;
        }
        let idx = TagIdx(self.tags.len() as u32);
        let name: Arc<str> = Arc::from(name);
        self.tags.push(Arc::clone(&name));
        self.tag_by_name.insert(name, idx);
        idx
    }

    /// Adds or replaces an item.
    pub fn upsert(&mut self, item: Item) -> ItemIdx {
        self.generation += 1;
        let idx = self.intern_item(&item.id);
        let tags = item.tags.iter().map(|tag| self.intern_tag(tag)).collect();
        let last = idx.0 as usize + 1 == self.item_tags.len();
        self.item_tags[idx.0 as usize] = tags;
        if last {
            // Appending the newest item: extend the flat copy in place.
            self.tag_flat.truncate(self.tag_offsets[idx.0 as usize] as usize);
            self.tag_flat.extend_from_slice(&self.item_tags[idx.0 as usize]);
            self.tag_offsets[idx.0 as usize + 1] = self.tag_flat.len() as u32;
        } else {
            self.rebuild_flat_tags();
        }
        self.traits[idx.0 as usize] = ItemTraits::of(&item);
        self.items[idx.0 as usize] = Some(Arc::new(item));
        idx
    }

    /// Marks an item unavailable. Returns false when the item is not in the catalog.
    pub fn withdraw(&mut self, id: &str) -> Option<Arc<Item>> {
        let idx = *self.by_id.get(id)?;
        let slot = self.items[idx.0 as usize].as_mut()?;
        Arc::make_mut(slot).available = false;
        self.traits[idx.0 as usize].available = false;
        self.generation += 1;
        Some(Arc::clone(slot))
    }

    /// Approximate bytes the catalog holds: the interned ids and tags, their maps, the traits
    /// and tag lists, and the items themselves (strings, tags, attribute and variant JSON).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        // An `Arc<str>` allocation: two counters and the text.
        let arc_str = |s: &Arc<str>| 16 + s.len();
        // A hash map entry: key, value and a control byte, by capacity.
        let ids = self.ids.capacity() * size_of::<Arc<str>>()
            + self.ids.iter().map(arc_str).sum::<usize>()
            + self.by_id.capacity() * (size_of::<(Arc<str>, ItemIdx)>() + 1);
        let tags = self.tags.capacity() * size_of::<Arc<str>>()
            + self.tags.iter().map(arc_str).sum::<usize>()
            + self.tag_by_name.capacity() * (size_of::<(Arc<str>, TagIdx)>() + 1);
        let per_item = self.traits.capacity() * size_of::<ItemTraits>()
            + self.item_tags.capacity() * size_of::<Vec<TagIdx>>()
            + self.item_tags.iter().map(|t| t.capacity() * size_of::<TagIdx>()).sum::<usize>()
            + self.tag_offsets.capacity() * size_of::<u32>()
            + self.tag_flat.capacity() * size_of::<TagIdx>();
        let items = self.items.capacity() * size_of::<Option<Arc<Item>>>()
            + self.items.iter().flatten().map(|item| 16 + size_of::<Item>() + item_heap_bytes(item)).sum::<usize>();
        ids + tags + per_item + items
    }

    /// The index of an item id, if known.
    pub fn lookup(&self, id: &str) -> Option<ItemIdx> {
        self.by_id.get(id).copied()
    }

    /// The index of a tag, if known.
    pub fn lookup_tag(&self, name: &str) -> Option<TagIdx> {
        self.tag_by_name.get(name).copied()
    }

    /// The id of an item index.
    pub fn id(&self, idx: ItemIdx) -> &str {
        &self.ids[idx.0 as usize]
    }

    /// The catalog item, if the index has one.
    pub fn item(&self, idx: ItemIdx) -> Option<&Arc<Item>> {
        self.items.get(idx.0 as usize).and_then(Option::as_ref)
    }

    /// The item's precomputed traits (all false for items only seen in events).
    pub fn traits(&self, idx: ItemIdx) -> ItemTraits {
        self.traits.get(idx.0 as usize).copied().unwrap_or_default()
    }

    /// The item's tags.
    pub fn tags_of(&self, idx: ItemIdx) -> &[TagIdx] {
        let i = idx.0 as usize;
        match (self.tag_offsets.get(i), self.tag_offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.tag_flat[start as usize..end as usize],
            _ => &[],
        }
    }

    /// The index's generation: it moves on with every change of an item.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of distinct tags.
    pub fn n_tags(&self) -> usize {
        self.tags.len()
    }

    fn rebuild_flat_tags(&mut self) {
        self.tag_offsets.clear();
        self.tag_flat.clear();
        self.tag_offsets.push(0);
        for tags in &self.item_tags {
            self.tag_flat.extend_from_slice(tags);
            self.tag_offsets.push(self.tag_flat.len() as u32);
        }
    }

    /// A tag's name.
    pub fn tag_name(&self, idx: TagIdx) -> &str {
        &self.tags[idx.0 as usize]
    }

    /// Number of item indices (catalog items and items seen only in events).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no item is known.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of items in the catalog that may be recommended.
    pub fn n_available(&self) -> usize {
        self.items.iter().flatten().filter(|item| item.available).count()
    }

    /// Every catalog item with its index.
    pub fn iter(&self) -> impl Iterator<Item = (ItemIdx, &Arc<Item>)> {
        self.items.iter().enumerate().filter_map(|(i, item)| item.as_ref().map(|item| (ItemIdx(i as u32), item)))
    }
}

/// Bytes an item holds outside its struct (approximate for the JSON maps).
fn item_heap_bytes(item: &Item) -> usize {
    item.id.capacity()
        + item.kind.capacity()
        + item.title.capacity()
        + item.tags.iter().map(|t| std::mem::size_of::<String>() + t.capacity()).sum::<usize>()
        + json_map_bytes(&item.attributes)
        + json_map_bytes(&item.variants)
}

/// Approximate heap bytes of a JSON object: per entry its key, a `Value` and a map node's share.
fn json_map_bytes(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    map.iter()
        .map(|(key, value)| 32 + key.len() + std::mem::size_of::<serde_json::Value>() + json_value_bytes(value))
        .sum()
}

fn json_value_bytes(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.capacity(),
        serde_json::Value::Array(values) => {
            values.iter().map(|v| std::mem::size_of::<serde_json::Value>() + json_value_bytes(v)).sum()
        }
        serde_json::Value::Object(map) => json_map_bytes(map),
        _ => 0,
    }
}
