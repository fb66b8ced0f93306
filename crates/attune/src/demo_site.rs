//! The demo's web site at `/demo/`: the calm publisher's home, article and meditation pages and a
//! shop, server-rendered from the demo catalog, with `attune.js` adding a consent banner, page
//! views, dwell and scroll depth, and personalized slots over server-rendered fallback content.
//! Plain HTML from the server; the only script is `attune.js` and a few lines that start it.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use serde_json::Value;

/// The name of the demo's browser key (earlier ones are revoked at each start).
pub const KEY_NAME: &str = "attune demo site";

struct Site {
    items: Vec<Value>,
    key: String,
}

/// The site's routes, using browser key `key`.
pub fn router(items: Vec<Value>, key: String) -> Router {
    let site = Arc::new(Site { items, key });
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(home))
        .route("/demo/articles", get(|s| list(s, "article", "Articles")))
        .route("/demo/meditations", get(|s| list(s, "meditation", "Meditations")))
        .route("/demo/shop", get(|s| list(s, "product", "Shop")))
        .route("/demo/item/{id}", get(item))
        .with_state(site)
}

/// Creates the demo's browser key for the server's own origins (revoking earlier ones).
pub fn browser_key(
    engine: &attune_engine::Engine,
    address: std::net::SocketAddr,
    minted_open: bool,
) -> anyhow::Result<String> {
    for key in engine.list_keys() {
        if key.name == KEY_NAME && !key.revoked {
            engine.revoke_key(&key.id)?;
        }
    }
    let port = address.port();
    let mut origins = vec![format!("http://{address}")];
    if address.ip().is_loopback() {
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
    }
    origins.dedup();
    let scopes = vec![attune_engine::Scope::EventsWrite, attune_engine::Scope::Decide];
    let (_, secret) = engine.create_browser_key(KEY_NAME, scopes, origins, minted_open)?;
    Ok(secret)
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text<'a>(item: &'a Value, field: &str) -> &'a str {
    item[field].as_str().unwrap_or_default()
}

fn summary(item: &Value) -> &str {
    item["variants"]["foundational"]["summary"].as_str().unwrap_or_default()
}

fn card(item: &Value) -> String {
    let id = text(item, "id");
    format!(
        "<li class=\"card\"><a href=\"/demo/item/{}\"><span class=\"kind\">{}</span><strong>{}</strong></a><p>{}</p></li>",
        esc(id),
        esc(text(item, "kind")),
        esc(text(item, "title")),
        esc(summary(item))
    )
}

const STYLE: &str = "body{font:17px/1.5 Georgia,serif;margin:0;background:#f6f4ef;color:#2d2a26}\
header{background:#e7efe9;padding:1em 2em}header a{margin-right:1.2em;color:#2f5d50}\
main{max-width:52em;margin:auto;padding:1em 2em}ul.cards{list-style:none;padding:0;display:grid;\
grid-template-columns:repeat(auto-fill,minmax(15em,1fr));gap:1em}.card{background:#fff;padding:1em;border-radius:8px}\
.card a{color:#2d2a26;text-decoration:none}.kind{display:block;font-size:.75em;text-transform:uppercase;color:#6b7d74}\
.why{font-size:.85em;color:#4d6b60}#banner{position:fixed;bottom:0;left:0;right:0;background:#2f5d50;color:#fff;\
padding:1em 2em}#banner button{margin-left:1em;font-size:1em}article p{max-width:36em}";

fn page(site: &Site, title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · Calm</title><style>{STYLE}</style></head><body>
<header><a href="/demo/"><b>Calm</b></a><a href="/demo/articles">Articles</a><a href="/demo/meditations">Meditations</a><a href="/demo/shop">Shop</a></header>
<main>{body}</main>
<div id="banner" hidden><span>May we remember what you read here to suggest what could help you next? Nothing is stored until you choose.</span>
<button id="consent-accept">Yes, personalize</button><button id="consent-decline">No, thanks</button></div>
<script src="/v1/attune.js"></script>
<script>
attune.init({{key: "{key}", consent: function (choose) {{
  var banner = document.getElementById("banner");
  banner.hidden = false;
  document.getElementById("consent-accept").onclick = function () {{ banner.hidden = true; choose(true); }};
  document.getElementById("consent-decline").onclick = function () {{ banner.hidden = true; choose(false); }};
}}}});
</script></body></html>"#,
        title = esc(title),
        key = esc(&site.key),
    ))
}

/// A slot: fallback cards from the server, a template for decided items.
fn slot(name: &str, count: usize, heading: &str, fallback: &[&Value]) -> String {
    let cards: String = fallback.iter().map(|item| card(item)).collect();
    format!(
        r#"<h2>{heading}</h2><section class="cards-slot" data-attune-slot="{name}" data-count="{count}" data-href="/demo/item/{{id}}">
<ul class="cards fallback">{cards}</ul>
<template><div class="card"><a data-attune-link><span class="kind" data-attune-field="kind"></span><strong data-attune-field="headline"></strong></a>
<p class="why"><span data-attune-field="why"></span> · <a data-attune-me>Why am I seeing this?</a></p></div></template></section>"#
    )
}

async fn home(State(site): State<Arc<Site>>) -> Html<String> {
    // The fallback: what everyone sees without personalization (the editors' evergreen choice).
    let pick = |kinds: &[&str], n: usize| -> Vec<&Value> {
        let sleep = |item: &&Value| item["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "sleep"));
        site.items.iter().filter(|item| kinds.contains(&text(item, "kind")) && !sleep(item)).take(n).collect()
    };
    let body = format!(
        "<h1>Slow down, a little every day</h1><p>Articles, meditations and a few good things for rest, focus and calm.</p>{}{}",
        slot("for_you", 4, "For you", &pick(&["article", "meditation", "course"], 4)),
        slot("more_for_you", 3, "Keep exploring", &pick(&["product", "retreat"], 3)),
    );
    page(&site, "Home", &body)
}

async fn list(State(site): State<Arc<Site>>, kind: &'static str, title: &'static str) -> Html<String> {
    let cards: String = site.items.iter().filter(|item| text(item, "kind") == kind).map(card).collect();
    page(&site, title, &format!("<h1>{title}</h1><ul class=\"cards\">{cards}</ul>"))
}

async fn item(State(site): State<Arc<Site>>, Path(id): Path<String>) -> Response {
    let Some(item) = site.items.iter().find(|item| text(item, "id") == id) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], "<h1>Not found</h1>")
            .into_response();
    };
    let variants = &item["variants"];
    let paragraphs: String = ["foundational", "contextual", "emotional"]
        .iter()
        .map(|v| {
            format!(
                "<h2>{}</h2><p>{}</p>",
                esc(variants[v]["headline"].as_str().unwrap_or_default()),
                esc(variants[v]["summary"].as_str().unwrap_or_default())
            )
        })
        .collect();
    let tags: Vec<String> = item["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).map(esc).collect();
    let price = item["attributes"]["price"].as_f64().map(|p| format!("<p><b>€{p:.0}</b></p>")).unwrap_or_default();
    let body = format!(
        r#"<article data-attune-item="{id}"><span class="kind">{kind}</span><h1>{title}</h1>{price}<p class="tags">{tags}</p>{paragraphs}</article>"#,
        id = esc(&id),
        kind = esc(text(item, "kind")),
        title = esc(text(item, "title")),
        tags = tags.join(" · "),
    );
    page(&site, text(item, "title"), &body).into_response()
}
