//! The editors' console in a real headless browser (Debian's Chromium driven by ChromeDriver over
//! the W3C WebDriver protocol, `tests/support/webdriver.rs`): sign in with a key, read what a
//! person would be shown, pin an editorial pick with the form and see it in that person's feed,
//! remove it, and confirm a rule that was due for review. Each step is checked in the page and, where it changes something,
//! through the API as well.
//!
//! Needs `chromium` and `chromedriver` (`scripts/ci-packages.sh` installs them). Without them the
//! test says so and passes, except under CI (`CI` set), where it fails.

mod support;

use support::webdriver::{Driver, Engine};

use serde_json::{Value, json};

const ADMIN_KEY: &str = "console-test-admin-key-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_pins_a_pick_and_reviews_a_rule_in_the_browser() {
    let Some(driver) = Driver::start(Engine::Chromium).await else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let (server, base) = support::spawn_serve(
        support::attune(&["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .env("ATTUNE_ADMIN_KEY", ADMIN_KEY),
    );
    let _server = support::Killed(server);
    let api = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Value| {
        api.request(method, format!("{base}{path}")).bearer_auth(ADMIN_KEY).json(&body).send()
    };
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("item-{i}"), "kind": "article", "title": format!("Quiet article number {i}"), "tags": ["sleep"]}))
        .collect();
    let put = call(reqwest::Method::PUT, "/v1/items", json!({"items": items})).await.expect("items");
    assert!(put.status().is_success(), "{}", put.text().await.unwrap_or_default());
    let events: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("e-{i}"), "type": "view", "user": "reader-1", "item": format!("item-{i}")}))
        .collect();
    assert!(
        call(reqwest::Method::POST, "/v1/events", json!({"events": events}))
            .await
            .expect("events")
            .status()
            .is_success()
    );
    let rule = json!({"when": {}, "then": {"boost_tags": ["sleep"]}, "owner": "editor@example.org", "review_by": "2026-01-01"});
    assert!(call(reqwest::Method::PUT, "/v1/rules/sleep-first", rule).await.expect("rule").status().is_success());

    let browser = driver.browser().await;

    // Signing in: the console sends a browser without the cookie to the sign-in form.
    browser.goto(&format!("{base}/console")).await;
    browser.wait_for("Sign in to the Attune console").await;
    assert!(browser.url().await.ends_with("/console/login"), "{}", browser.url().await);
    browser.type_into("#key", "not-a-key").await;
    browser.click("main button[type=submit]").await;
    browser.wait_for("That key is unknown").await;
    browser.type_into("#key", ADMIN_KEY).await;
    browser.click("main button[type=submit]").await;
    let overview = browser.wait_for("At a glance").await;
    assert!(overview.contains("1 rule(s) due for review"), "{overview}");

    // What a person would see now, with reasons; the preview is not logged as a decision.
    browser.goto(&format!("{base}/console/person?id=reader-1&slot=home_feed")).await;
    let person = browser.wait_for("What reader-1 would see now").await;
    assert!(person.contains("Quiet article number"), "{person}");
    let logged: Value = api
        .get(format!("{base}/v1/review/decisions?limit=100"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("review")
        .json()
        .await
        .expect("json");
    assert_eq!(logged["decisions"].as_array().map(Vec::len), Some(0), "a preview is not a decision: {logged}");

    // Pin a pick with the form: it is stored, listed, and shown to the person as an editor's pick.
    browser.goto(&format!("{base}/console/editorial")).await;
    browser.wait_for("Pin a pick").await;
    browser.type_into("#pick-id", "tonight").await;
    browser.type_into("#pick-item", "item-11").await;
    browser.type_into("#pick-note", "Tonight's pick").await;
    browser.click("form[action='/console/picks'] button").await;
    let editorial = browser.wait_for("The pick was pinned.").await;
    assert!(editorial.contains("Quiet article number 11"), "{editorial}");
    let pick = api.get(format!("{base}/v1/editorial/picks/tonight")).bearer_auth(ADMIN_KEY).send().await.expect("pick");
    assert!(pick.status().is_success(), "the pick is stored");
    browser.goto(&format!("{base}/console/person?id=reader-1&slot=home_feed")).await;
    browser.wait_for("Quiet article number 11 (editorial)").await;

    // Set the slot's shares with the form: stored, and listed.
    browser.goto(&format!("{base}/console/editorial")).await;
    browser.wait_for("Set a slot's shares").await;
    browser.type_into("#slot-editorial", "30").await;
    browser.type_into("#slot-serendipity", "5").await;
    browser.click("form[action='/console/slots'] button").await;
    let shares = browser.wait_for("The slot's shares were saved.").await;
    assert!(shares.contains("30%") && shares.contains("5%"), "{shares}");
    let slot: Value = api
        .get(format!("{base}/v1/slots/home_feed"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("slot")
        .json()
        .await
        .expect("json");
    assert!((slot["editorial_share"].as_f64().unwrap_or(0.0) - 0.3).abs() < 1e-6, "{slot}");

    // Remove the pick again.
    browser.goto(&format!("{base}/console/editorial")).await;
    browser.wait_for("Tonight's pick").await;
    browser.click("form[action='/console/picks/remove'] button").await;
    browser.wait_for("The pick was removed.").await;
    let pick = api.get(format!("{base}/v1/editorial/picks/tonight")).bearer_auth(ADMIN_KEY).send().await.expect("pick");
    assert_eq!(pick.status(), reqwest::StatusCode::NOT_FOUND);

    // The quarterly review: the due rule is confirmed for another quarter.
    browser.goto(&format!("{base}/console/rules")).await;
    browser.wait_for("2026-01-01 due").await;
    browser.click("form[action='/console/rules/review'] button").await;
    browser.wait_for("marked reviewed").await;
    let rule: Value = api
        .get(format!("{base}/v1/rules/sleep-first"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("rule")
        .json()
        .await
        .expect("json");
    assert!(rule["review_by"].as_str().is_some_and(|date| date > "2026-12-31"), "{rule}");
    let due: Value = api
        .get(format!("{base}/v1/rules?due=true"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("due")
        .json()
        .await
        .expect("json");
    assert_eq!(due["rules"].as_array().map(Vec::len), Some(0), "{due}");

    // The measurement page renders the four dimensions.
    browser.goto(&format!("{base}/console/measure")).await;
    let measure = browser.wait_for("in four dimensions").await;
    for dimension in ["Behavioral", "Attitudinal", "Business", "Ethical"] {
        assert!(measure.contains(dimension), "{measure}");
    }

    browser.close().await;
}
