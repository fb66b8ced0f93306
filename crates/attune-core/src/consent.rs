//! Consent per purpose. Without `personalization` no profile is built or used; without `contextual`
//! location and weather never reach disk; without `analytics` events are kept only as aggregates.

use serde::{Deserialize, Serialize};

/// A purpose that data may serve, and that a person consents to (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Purpose {
    /// Building and using a profile to tailor what the person sees.
    Personalization,
    /// Using the moment: location, weather, device, time of day.
    Contextual,
    /// Keeping individual events for measurement.
    Analytics,
    /// Sending email.
    Email,
    /// Sending push notifications.
    Push,
}

impl Purpose {
    /// Every purpose, in the order of `API.md`.
    pub const ALL: [Purpose; 5] =
        [Purpose::Personalization, Purpose::Contextual, Purpose::Analytics, Purpose::Email, Purpose::Push];

    /// The snake_case name used on the wire and in schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Personalization => "personalization",
            Purpose::Contextual => "contextual",
            Purpose::Analytics => "analytics",
            Purpose::Email => "email",
            Purpose::Push => "push",
        }
    }

    /// Parses a purpose name.
    pub fn parse(name: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A person's consent, one flag per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// See [`Purpose::Personalization`].
    pub personalization: bool,
    /// See [`Purpose::Contextual`].
    pub contextual: bool,
    /// See [`Purpose::Analytics`].
    pub analytics: bool,
    /// See [`Purpose::Email`].
    pub email: bool,
    /// See [`Purpose::Push`].
    pub push: bool,
}

impl Default for Consent {
    /// The server's defaults from `API.md`: personalization and analytics on; contextual, email
    /// and push off.
    fn default() -> Self {
        Consent { personalization: true, contextual: false, analytics: true, email: false, push: false }
    }
}

impl Consent {
    /// Whether the person consents to `purpose`.
    pub fn allows(&self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Personalization => self.personalization,
            Purpose::Contextual => self.contextual,
            Purpose::Analytics => self.analytics,
            Purpose::Email => self.email,
            Purpose::Push => self.push,
        }
    }

    /// Sets the flag for `purpose`.
    pub fn set(&mut self, purpose: Purpose, allowed: bool) {
        match purpose {
            Purpose::Personalization => self.personalization = allowed,
            Purpose::Contextual => self.contextual = allowed,
            Purpose::Analytics => self.analytics = allowed,
            Purpose::Email => self.email = allowed,
            Purpose::Push => self.push = allowed,
        }
    }
}
