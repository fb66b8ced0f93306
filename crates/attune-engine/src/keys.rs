//! API keys: scoped, stored hashed (SHA-256 of a 256-bit random secret: a slow password hash adds
//! nothing for secrets this long), shown once at creation.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
