//! Channels: where an event happened or a decision is shown. One hub feeds every touchpoint, and
//! each event and decision names its channel from this closed list, so rules, slot settings and
//! reports can rely on the names.

/// A touchpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Channel {
    /// A web page (the default).
    #[default]
    Web,
    /// A mobile or desktop app.
    App,
    /// An email (a digest, a newsletter).
    Email,
    /// A push notification.
    Push,
    /// In person: a retreat, a class, an event.
    InPerson,
    /// A purchase in a shop (till or point of sale).
    OfflinePurchase,
}

impl Channel {
    /// Every channel, in the order of `API.md`.
    pub const ALL: [Channel; 6] =
        [Channel::Web, Channel::App, Channel::Email, Channel::Push, Channel::InPerson, Channel::OfflinePurchase];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::App => "app",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::InPerson => "in_person",
            Channel::OfflinePurchase => "offline_purchase",
        }
    }

    /// Parses a wire name (exact, lower case).
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The channel's position in [`Channel::ALL`] (an index into per-channel counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The names, for messages: `web, app, email, push, in_person or offline_purchase`.
    pub fn names() -> &'static str {
        "web, app, email, push, in_person or offline_purchase"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_all() {
        for (i, channel) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
            assert_eq!(channel.index(), i);
        }
        assert_eq!(Channel::parse("Email"), None);
        assert_eq!(Channel::parse("sms"), None);
        assert_eq!(Channel::default(), Channel::Web);
    }
}
