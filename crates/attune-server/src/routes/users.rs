//! People: what Attune knows (`GET /v1/users/{id}`), consent and preferences.

use attune_core::{Consent, Preferences, QuietHours};
use attune_engine::PersonView;
use axum::{Json, extract::State};

use super::{check_tags, rfc3339};
use crate::{
    AppState,
    auth::{Auth, UsersRead, UsersWrite, VisitorConsent},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::{ApiJson, IdPath},
    wire::{AffinityOut, ConsentIn, ConsentOut, PreferencesIn, PreferencesOut, QuietHoursIo, RecentOut, UserOut},
};

/// Converts consent to its wire form.
pub fn consent_out(consent: &Consent) -> ConsentOut {
    ConsentOut {
        personalization: consent.personalization,
        contextual: consent.contextual,
        analytics: consent.analytics,
        email: consent.email,
        push: consent.push,
    }
}

pub(crate) fn preferences_out(preferences: &Preferences) -> PreferencesOut {
    PreferencesOut {
        goals: preferences.goals.clone(),
        less_of: preferences.less_of.clone(),
        personalization: on_off(preferences.personalization),
        quiet_hours: preferences
            .quiet_hours
            .map(|q| QuietHoursIo { start: QuietHours::format(q.start_min), end: QuietHours::format(q.end_min) }),
        timezone: preferences.timezone.clone(),
    }
}

fn on_off(on: bool) -> String {
    if on { "on".into() } else { "off".into() }
}

pub(crate) fn user_out(view: PersonView) -> UserOut {
    UserOut {
        id: view.id,
        consent: consent_out(&view.consent),
        consent_given: view.consent_given,
        preferences: preferences_out(&view.preferences),
        personalization: on_off(view.personalization_on),
        journey_stage: view.journey_stage.as_str().to_owned(),
        engagement: view.engagement,
        affinities: view.affinities.into_iter().map(|(tag, weight)| AffinityOut { tag, weight }).collect(),
        recent: view.recent.iter().map(|(item, _)| item.clone()).collect(),
        recent_activity: view.recent.into_iter().map(|(item, at)| RecentOut { item, at: rfc3339(at) }).collect(),
        aliases: view.aliases,
        events: view.n_events,
        channels: view
            .channels
            .iter()
            .map(|(channel, n)| (channel.as_str().to_owned(), serde_json::json!(n)))
            .collect(),
        timezone: view.timezone,
        timezone_source: view.timezone_source.to_owned(),
        send_hour: view.send_hour.and_then(|h| u8::try_from(h).ok()),
        updated_at: rfc3339(view.updated_ms),
    }
}

/// What Attune knows and infers about a person.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "people", params(("id" = String, Path, description = "The person's id (or an anonymous id)")),
    responses((status = 200, description = "What Attune knows and infers about the person.", body = UserOut), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_user(
    State(state): State<AppState>,
    _auth: Auth<UsersRead>,
    IdPath(id): IdPath,
) -> ApiResult<Json<UserOut>> {
    let view = blocking(&state, move |engine| engine.person(&id)).await?;
    Ok(Json(user_out(view)))
}

/// Set consent per purpose; unset purposes take the server's defaults. Works before any event.
/// Needs `users:write`, or a browser key for its own anonymous visitor (`anon-…`).
#[utoipa::path(put, path = "/v1/users/{id}/consent", tag = "people", params(("id" = String, Path, description = "The person's id")),
    request_body = ConsentIn,
    responses((status = 200, description = "Consent per purpose as now in force.", body = ConsentOut), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_consent(
    State(state): State<AppState>,
    Auth(caller, _): Auth<VisitorConsent>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<ConsentIn>,
) -> ApiResult<Json<ConsentOut>> {
    // A browser key sets only its own anonymous visitor's consent (the banner's choice).
    if caller.browser.is_some() && !state.engine.browser_visitor_allowed(&id) {
        return Err(crate::browser::browser_visitor_only("id"));
    }
    let defaults = state.engine.config().default_consent;
    let consent = Consent {
        personalization: body.personalization.unwrap_or(defaults.personalization),
        contextual: body.contextual.unwrap_or(defaults.contextual),
        analytics: body.analytics.unwrap_or(defaults.analytics),
        email: body.email.unwrap_or(defaults.email),
        push: body.push.unwrap_or(defaults.push),
    };
    blocking(&state, move |engine| engine.put_consent(&id, consent, &caller.key_id)).await?;
    Ok(Json(consent_out(&consent)))
}

/// Parses preferences from the wire.
pub fn to_preferences(body: PreferencesIn) -> Result<Preferences, ApiError> {
    let goals = body.goals.unwrap_or_default();
    check_tags(&goals, "goals", 20)?;
    let less_of = body.less_of.unwrap_or_default();
    check_tags(&less_of, "less_of", 50)?;
    let personalization = match body.personalization.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(_) => {
            return Err(
                ApiError::new(Code::InvalidValue, "`personalization` is `on` or `off`.").with_field("personalization")
            );
        }
    };
    let quiet_hours = match body.quiet_hours {
        None => None,
        Some(q) => Some(QuietHours::parse(&q.start, &q.end).ok_or_else(|| {
            ApiError::new(
                Code::InvalidValue,
                "Quiet hours are `HH:MM` times, e.g. {\"start\": \"21:00\", \"end\": \"08:00\"}.",
            )
            .with_field("quiet_hours")
        })?),
    };
    if let Some(tz) = &body.timezone
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        return Err(ApiError::new(Code::InvalidValue, "`timezone` is an IANA time zone such as Europe/Berlin.")
            .with_field("timezone"));
    }
    Ok(Preferences { goals, less_of, personalization, quiet_hours, timezone: body.timezone })
}

/// Set explicit preferences (replaces what was stored).
#[utoipa::path(put, path = "/v1/users/{id}/preferences", tag = "people", params(("id" = String, Path, description = "The person's id")),
    request_body = PreferencesIn,
    responses((status = 200, description = "The preferences as stored.", body = PreferencesOut), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn put_preferences(
    State(state): State<AppState>,
    Auth(caller, _): Auth<UsersWrite>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PreferencesIn>,
) -> ApiResult<Json<PreferencesOut>> {
    let preferences = to_preferences(body)?;
    let out = preferences_out(&preferences);
    blocking(&state, move |engine| engine.put_preferences(&id, preferences, &caller.key_id)).await?;
    Ok(Json(out))
}
