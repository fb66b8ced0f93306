//! The editors' console at `/console`: what is recommended to whom (the decision log and a live
//! preview for any person), editorial picks, slot shares and flags, rules due for their quarterly
//! review, experiments and the four-dimension report. Server-rendered HTML with plain forms: it
//! works without JavaScript and needs no build step.
//!
//! **Access:** in open mode (loopback, no admin key) anyone who can reach the server. Otherwise an
//! editor signs in at `/console/login` with the admin key or a key holding the `admin` scope; the
//! key is kept in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/console`, so another site can
//! neither read it nor make the browser send it with a forged form. Forms also refuse requests the
//! browser marks as cross-site. Every change is audited under the signing-in key's id, as over the
//! API.
//!
//! **Forms** post and answer `303 See Other` back to their page (post/redirect/get).
//!
//! **Layout:** one file per page (`overview`, `person`, `editorial`, `rules`, `measure`), the
//! sign-in pages in `login`, sessions, the CSRF guard and the [`SignedIn`] extractor in `session`,
//! the page frame and shared pieces in `page`, and the server-rendered SVG charts in `chart`. A
//! handler that needs an editor takes [`SignedIn`] as an argument: without a session the
//! extractor answers with a redirect to the sign-in form before the handler runs.

mod chart;
mod editorial;
mod login;
mod measure;
mod overview;
mod page;
mod person;
mod rules;
mod session;

pub use editorial::{
    IdForm, PickForm, SharesForm, get_editorial, post_clear_flag, post_pick, post_remove_pick, post_shares,
};
pub use login::{LoginForm, get_login, post_login, post_logout};
pub use measure::get_measure;
pub use overview::get_overview;
pub use page::Done;
pub use person::{PersonQuery, get_person};
pub use rules::{get_rules, post_review_rule};
pub use session::{ClientAddress, Editor, SESSION_TTL, Sessions, SignedIn, guard};

/// The cookie that holds the session id.
const COOKIE: &str = "attune_console";

/// The cookie that holds the sign-in form's CSRF token (before there is a session).
const LOGIN_COOKIE: &str = "attune_login";

/// Where the CSRF token goes in rendered pages; the console's guard replaces it with the
/// session's token (or the sign-in form's).
const CSRF_PLACEHOLDER: &str = "__attune_csrf__";
