//! Email digests (`POST /v1/digest`): the items of one email for one person, chosen by the same
//! decide pipeline and explained the same way (channel `email`), never repeating what the
//! person's recent digests sent, only with email consent, and only when the frequency budget
//! shared with `POST /v1/notifications/plan` allows a send.
//!
//! The digest log is the person's notification plans (`Table::Notifications`, key
//! `<person>\0<plan id>`): a digest's plan records the items it sent and the decision that chose
//! them. One record both reserves the send and logs the items, so the budget and the log never
//! disagree; every server of one database reads the same log; export and erasure reach it by the
//! person's key prefix, and the retention sweep ends it with the other plans (90 days by default).

use attune_core::{Channel, Purpose};
use attune_store::Table;
use parking_lot::Mutex;

use attune_store::Store;

use crate::decide::{DecideContext, DecideCtx, DecideRequest, Decision, PlacementRequest};
use crate::error::Result;
use crate::measure::{MeasureCtx, NO_CONSENT, NotificationPlan};
use crate::records::scan_json;

/// The slot a digest fills unless the request names another (its settings, rules and picks are
/// the digest's: `PUT /v1/slots/email_digest`).
pub const DIGEST_SLOT: &str = "email_digest";

/// The reason of a digest with nothing new to send (every candidate was sent before, consumed or
/// filtered): no send is reserved.
pub const NOTHING_NEW: &str = "nothing_new";

/// A digest request.
#[derive(Debug, Clone)]
pub struct DigestRequest {
    /// The person (a user id; an unknown id gets the non-personalized default).
    pub user: String,
    /// How many items (1–100).
    pub count: usize,
    /// The slot to fill ([`DIGEST_SLOT`] by default).
    pub slot: String,
    /// Not earlier than this (ms; `i64::MIN`: now).
    pub not_before_ms: i64,
    /// The moment (time zone, device); the channel is always `email`.
    pub context: DecideContext,
}

/// A digest: when to send it and its items, or why there is none.
#[derive(Debug, Clone)]
pub struct Digest {
    /// When to send (ms), or `None` with nothing to send.
    pub send_at_ms: Option<i64>,
    /// The plan's reason (`preferred_hour`, `default_hour`, `quiet_hours`, `as_requested`), or
    /// why there is nothing: `no_consent`, `frequency_cap`, [`NOTHING_NEW`].
    pub reason: String,
    /// The decision that chose the items (its id attributes clicks), when there are items.
    pub decision: Option<Decision>,
    /// Items the person's recent digests sent: left out of this one (counted also when there
    /// is no digest).
    pub previously_sent: usize,
    /// The digest log entry (`ntf-…`), when a send was reserved.
    pub plan_id: Option<String>,
}

impl Digest {
    fn empty(reason: &str, previously_sent: usize) -> Digest {
        Digest { send_at_ms: None, reason: reason.to_owned(), decision: None, previously_sent, plan_id: None }
    }
}

/// Digests of one person are made one at a time (on this server), so two concurrent calls never
/// send the same items twice or overdraw the budget; people hash to one of these locks.
static DIGEST_LOCKS: [Mutex<()>; 16] = [const { parking_lot::const_mutex(()) }; 16];

/// What a digest reads and writes: a decision, the notification budget, the digest log.
pub(crate) struct DigestCtx<'a> {
    pub store: &'a dyn Store,
    pub decide: DecideCtx<'a>,
    pub measure: MeasureCtx<'a>,
}

impl DigestCtx<'_> {
    /// Builds one email digest. Reserves a send from the shared budget only when it has items.
    pub fn digest(&self, request: &DigestRequest) -> Result<Digest> {
        let person = self.measure.people.resolve(&request.user);
        let lock = &DIGEST_LOCKS[(xxhash_rust::xxh3::xxh3_64(person.as_bytes()) % 16) as usize];
        let _one_at_a_time = lock.lock();
        // What recent digests sent is told whatever the answer: a digest refused by the budget
        // does not read as if nothing had been sent.
        let sent = self.digest_items_sent(&person)?;
        let previously_sent = sent.len();
        if !self.measure.people.consent_of(&person).allows(Purpose::Email) {
            return Ok(Digest::empty(NO_CONSENT, previously_sent));
        }
        let plan = self.measure.next_send(&person, Channel::Email.as_str(), request.not_before_ms)?;
        if plan.send_at_ms.is_none() {
            return Ok(Digest::empty(&plan.reason, previously_sent));
        }
        let decide = DecideRequest {
            subject: Some(request.user.clone()),
            context: DecideContext { channel: Channel::Email, ..request.context.clone() },
            placements: vec![PlacementRequest { slot: request.slot.clone(), count: request.count }],
            explain: true,
            preview: false,
            exclude: sent,
        };
        let decision = self.decide.decide(&decide)?;
        let items: Vec<String> =
            decision.placements.iter().flat_map(|p| p.items.iter().map(|i| i.item.id.clone())).collect();
        if items.is_empty() {
            return Ok(Digest::empty(NOTHING_NEW, previously_sent));
        }
        let plan = NotificationPlan { items, decision_id: Some(decision.id.clone()), ..plan };
        let plan = self.measure.store_plan(&person, plan)?;
        Ok(Digest {
            send_at_ms: plan.send_at_ms,
            reason: plan.reason,
            decision: Some(decision),
            previously_sent,
            plan_id: Some(plan.id),
        })
    }

    /// Every item the person's stored digests sent (sorted, unique).
    pub fn digest_items_sent(&self, person: &str) -> Result<Vec<String>> {
        let mut items: Vec<String> = scan_json::<NotificationPlan>(
            self.store,
            Table::Notifications,
            &format!("{person}\0"),
            "notification plan",
        )?
        .into_iter()
        .flat_map(|(_, plan)| plan.items)
        .collect();
        items.sort_unstable();
        items.dedup();
        Ok(items)
    }
}
