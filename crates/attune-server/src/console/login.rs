//! Signing in and out: `GET`/`POST /console/login`, `POST /console/logout`.

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use maud::html;
use serde::Deserialize;

use super::{
    COOKIE,
    page::bare_page,
    session::{ClientAddress, SESSION_TTL, cookie, over_tls, sign_in_as},
};
use crate::{AppState, auth::AuthMode};

/// `GET /console/login`.
pub async fn get_login(State(state): State<AppState>) -> Response {
    if let AuthMode::Open = state.auth {
        return Redirect::to("/console").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    bare_page(
        status,
        "Sign in to the Attune console",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/console/login" {
                div.field {
                    label for="key" { "API key with the admin scope (or the admin key)" }
                    input #key type="password" name="key" autocomplete="current-password" required;
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    key: String,
}

/// `POST /console/login`: failed attempts count towards the address's throttle (as unknown
/// bearer keys do); a success starts a server-side session.
pub async fn post_login(
    State(state): State<AppState>,
    axum::Extension(ClientAddress(client)): axum::Extension<ClientAddress>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(error) = state.failures.check(&client) {
        let mut response = login_page(StatusCode::TOO_MANY_REQUESTS, Some(&error.message));
        if let Some(seconds) = error.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }
    let secret = form.key.trim();
    let Some(key_hash) = sign_in_as(&state, secret).filter(|_| !secret.is_empty()) else {
        state.failures.record(&client);
        return login_page(StatusCode::UNAUTHORIZED, Some("That key is unknown, revoked, or lacks the admin scope."));
    };
    let (session, _) = state.sessions.start(key_hash);
    let mut response = Redirect::to("/console").into_response();
    let secure = if over_tls(&headers, &uri) { "; Secure" } else { "" };
    let max_age = SESSION_TTL.as_secs();
    let cookie = format!("{COOKIE}={session}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /console/logout`: ends the session on the server, not just in the browser.
pub async fn post_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.end(id);
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("attune_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
