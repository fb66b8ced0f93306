//! API keys: scoped, stored hashed (SHA-256 of a 256-bit random secret: a slow password hash adds
//! nothing for secrets this long), shown once at creation.

use std::sync::Arc;

use attune_store::{Store, Table};
use parking_lot::RwLock;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::error::{Result, UserError};
use crate::records::{scan_json, to_json};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// `POST /v1/events`, `POST /v1/identify`.
    EventsWrite,
    /// `POST /v1/decide`, similar items, notification plans.
    Decide,
    /// Items, slots, editorial picks, rules, flags.
    CatalogWrite,
    /// Reading people's data.
    UsersRead,
    /// Consent, preferences, forgetting, erasure.
    UsersWrite,
    /// Reading the decision log (`GET /v1/review/decisions`: user ids and personal reasons).
    DecisionsRead,
    /// Everything, including keys, audit and models.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 7] = [
        Scope::EventsWrite,
        Scope::Decide,
        Scope::CatalogWrite,
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::DecisionsRead,
        Scope::Admin,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventsWrite => "events:write",
            Scope::Decide => "decide",
            Scope::CatalogWrite => "catalog:write",
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::DecisionsRead => "decisions:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A stored key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public id (`key_…`), shown in the audit log.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// When it was created.
    pub created_ms: i64,
    /// Revoked keys authenticate nothing.
    pub revoked: bool,
    /// Minted while the server ran open (no admin key): refused once an admin key is set.
    #[serde(default)]
    pub minted_open: bool,
    /// A browser key (for pages): its allowed origins. `None` for a back end's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserKey>,
}

/// What makes a key a browser key: the pages (origins) that may use it. A browser key holds
/// `events:write` and/or `decide` only, and only for the browser's own visitor (see
/// `People::browser_visitor_allowed`); known user ids need an identity token signed by the
/// site's back end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserKey {
    /// Allowed origins, normalized (`https://site.example`, `http://127.0.0.1:7700`).
    pub origins: Vec<String>,
}

/// The form of an anonymous id that a browser key may use: `anon-` and 32 lowercase hex
/// characters (128 random bits, made by `attune.js`). Back ends must not use ids of this form
/// for known people.
pub fn is_browser_visitor_id(id: &str) -> bool {
    id.strip_prefix("anon-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Normalizes an origin (`scheme://host[:port]`, lowercase, no path, no trailing slash), or
/// `None` when it is not one.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.len() > 253 {
        return None;
    }
    let ok = rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(origin)
}

/// The API keys, in memory by hash and written through to `Table::Keys`.
pub struct Keys {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by_hash: RwLock<FxHashMap<String, ApiKey>>,
}

impl Keys {
    /// Loads the stored keys.
    pub(crate) fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Keys> {
        let keys: Vec<(String, ApiKey)> = scan_json(&*store, Table::Keys, "", "key")?;
        let by_hash = keys.into_iter().map(|(_, key)| (key.hash.clone(), key)).collect();
        Ok(Keys { store, clock, by_hash: RwLock::new(by_hash) })
    }

    /// Creates a key; returns the stored key and the secret (shown once). `minted_open`: minted
    /// while the server runs open (without an admin key); such keys stop working once an admin
    /// key is set.
    pub fn create(&self, name: &str, scopes: Vec<Scope>, minted_open: bool) -> Result<(ApiKey, String)> {
        self.create_with(name, scopes, minted_open, None)
    }

    /// Creates a browser key for `origins` (normalized by the caller) with `scopes` (a subset of
    /// `events:write` and `decide`); returns the stored key and the secret.
    pub fn create_browser(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        origins: Vec<String>,
        minted_open: bool,
    ) -> Result<(ApiKey, String)> {
        self.create_with(name, scopes, minted_open, Some(BrowserKey { origins }))
    }

    fn create_with(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        minted_open: bool,
        browser: Option<BrowserKey>,
    ) -> Result<(ApiKey, String)> {
        let secret = new_secret();
        let key = ApiKey {
            id: format!("key_{}", ulid::Ulid::generate()),
            name: name.to_owned(),
            scopes,
            hash: hash_secret(&secret),
            created_ms: self.clock.now_ms(),
            revoked: false,
            minted_open,
            browser,
        };
        self.store.put(Table::Keys, &key.id, &to_json(&key))?;
        self.by_hash.write().insert(key.hash.clone(), key.clone());
        Ok((key, secret))
    }

    /// Revokes a key by id.
    pub fn revoke(&self, id: &str) -> Result<()> {
        let mut keys = self.by_hash.write();
        let key = keys.values_mut().find(|k| k.id == id).ok_or_else(|| UserError::not_found("key", id))?;
        key.revoked = true;
        self.store.put(Table::Keys, id, &to_json(&*key))?;
        Ok(())
    }

    /// Every key (without secrets), by id.
    pub fn list(&self) -> Vec<ApiKey> {
        let mut keys: Vec<ApiKey> = self.by_hash.read().values().cloned().collect();
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        keys
    }

    /// The live (not revoked) key with this hash.
    pub fn by_hash(&self, hash: &str) -> Option<ApiKey> {
        self.by_hash.read().get(hash).filter(|key| !key.revoked).cloned()
    }

    /// The key a secret belongs to, if any and not revoked.
    pub fn authenticate(&self, secret: &str) -> Option<ApiKey> {
        self.by_hash(&hash_secret(secret))
    }

    /// Every origin of a live browser key (for CORS preflights, which carry no key).
    pub fn browser_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self
            .by_hash
            .read()
            .values()
            .filter(|k| !k.revoked)
            .filter_map(|k| k.browser.as_ref())
            .flat_map(|b| b.origins.iter().cloned())
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// Applies keys another server stored (`changed`) or deleted (`removed`, by id); returns
    /// how many changed here.
    pub(crate) fn apply_stored(&self, changed: Vec<ApiKey>, removed: &[String]) -> usize {
        let mut keys = self.by_hash.write();
        let mut n = 0;
        for key in changed {
            if keys.get(&key.hash) != Some(&key) {
                keys.insert(key.hash.clone(), key);
                n += 1;
            }
        }
        if !removed.is_empty() {
            let before = keys.len();
            keys.retain(|_, key| !removed.contains(&key.id));
            n += before - keys.len();
        }
        n
    }
}

impl ApiKey {
    /// Whether the key grants `scope` (admin grants all).
    pub fn allows(&self, scope: Scope) -> bool {
        !self.revoked && (self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin))
    }
}

/// The hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret, `atk_` + 64 hex characters.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("atk_{}", hex::encode(bytes))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
