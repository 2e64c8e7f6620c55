//! In-app messages on the web (docs/API.md section 12): Customer.io's Gist
//! web SDK, served first-party, fed the edge's identity. The pure half:
//! settings, routes, which token a browser gets, metric bodies, and the
//! forwarded metric. `edge.rs` (wasm only, a module of `crate::edge`) does
//! the I/O; `js/texts.mjs` holds the bundle's bytes outside the wasm.

use serde_json::{json, Value};

use crate::core::body::Object;
use crate::core::event::{Event, EventType};
use crate::core::identifier::Identifier;
use crate::core::Error;

/// The pinned `customerio-gist-web` (package.json) served at `/_cio/gist.js`.
pub const GIST_VERSION: &str = "3.26.0";
/// Customer.io's own copy, for `IN_APP_SDK=cdn`.
pub const GIST_CDN_URL: &str = "https://code.gist.build/web/latest/gist.min.js";
/// Where the bundle's licence is (served in the bundle's first comment too).
pub const GIST_LICENSE_URL: &str = "https://github.com/customerio/gist-web/blob/master/LICENSE";

/// Where `/_cio/gist.js` comes from (`IN_APP_SDK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `first-party` (default): the pinned npm bundle, from this origin.
    FirstParty,
    /// `cdn`: a redirect to Customer.io's copy.
    Cdn,
}

/// The in-app settings: `IN_APP`, `IN_APP_SITE_ID`, `IN_APP_SDK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InApp {
    pub on: bool,
    /// The workspace's public site id for `Gist.setup`; never `CIO_SITE_ID`.
    pub site_id: Option<String>,
    pub sdk: Sdk,
}

impl Default for InApp {
    fn default() -> Self {
        InApp {
            on: false,
            site_id: None,
            sdk: Sdk::FirstParty,
        }
    }
}

impl Sdk {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "first-party" => Some(Sdk::FirstParty),
            "cdn" => Some(Sdk::Cdn),
            _ => None,
        }
    }
}

/// The in-app endpoints, in the one route table (`core::routes`).
pub use crate::core::routes::{in_app_route as route, InAppRoute};

/// Where a browser's in-app token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// Not identified (or the `_cioid` was not vouched for): no token.
    None,
    /// The identifier the cookie holds: the id, or the email.
    Is(String),
    /// `_cioid` is `cio_<cio_id>`: the person's id or email, looked up.
    Lookup(String),
}

/// The token for the identity a request's (already vouched) cookies carry.
/// Gist targets the identifier the profile carries; a `cio_…` value is never
/// a token.
pub fn token(identifier: Option<&Identifier>) -> Token {
    match identifier {
        None => Token::None,
        Some(Identifier::Id(id)) => Token::Is(id.clone()),
        Some(Identifier::Email(email)) => Token::Is(email.clone()),
        Some(Identifier::CioId(cio_id)) => Token::Lookup(cio_id.clone()),
    }
}

/// A looked-up person's token: its id, else its email; none else.
pub fn token_of(id: Option<&str>, email: Option<&str>) -> Option<String> {
    id.or(email).map(str::to_owned)
}

/// The session answer: `{"token": .. | null, "site_id": .. | null}`.
pub fn session_body(token: Option<&str>, settings: &InApp) -> Value {
    json!({ "token": token, "site_id": settings.site_id })
}

/// A delivery metric the browser reports (Customer.io's in-app metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Opened,
    Clicked,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Opened => "opened",
            MetricKind::Clicked => "clicked",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub delivery_id: String,
    pub metric: MetricKind,
    pub href: Option<String>,
    pub message_id: Option<String>,
}

pub const MAX_DELIVERY_ID_BYTES: usize = 120;
pub const MAX_HREF_BYTES: usize = 2048;
const MAX_MESSAGE_ID_BYTES: usize = 200;
/// Recorded metric events carry ids under this prefix, outside the browser
/// key space (`browser:`), so no browser call can pass for a metric.
pub const METRIC_ID_PREFIX: &str = "in-app:";
/// The event name a recorded metric gets: `in-app:opened`, `in-app:clicked`.
pub const METRIC_EVENT_PREFIX: &str = "in-app:";

fn text_field(
    body: &Object,
    field: &'static str,
    max: usize,
    required: bool,
) -> Result<Option<String>, Error> {
    match body.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s))
            if !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control) =>
        {
            Ok(Some(s.clone()))
        }
        _ => Err(Error::invalid(
            field,
            format!("must be a non-empty string of at most {max} bytes without control characters"),
        )),
    }
}

/// `POST /_cio/in-app/metric`: `{"delivery_id", "metric": "opened" |
/// "clicked", "href"?, "message_id"?}`.
pub fn parse_metric(body: &Object) -> Result<Metric, Error> {
    let delivery_id =
        text_field(body, "delivery_id", MAX_DELIVERY_ID_BYTES, true)?.unwrap_or_default();
    let metric = match body.get("metric").and_then(Value::as_str) {
        Some("opened") => MetricKind::Opened,
        Some("clicked") => MetricKind::Clicked,
        _ => {
            return Err(Error::invalid(
                "metric",
                "must be \"opened\" or \"clicked\"",
            ))
        }
    };
    let href = text_field(body, "href", MAX_HREF_BYTES, false)?;
    let message_id = text_field(body, "message_id", MAX_MESSAGE_ID_BYTES, false)?;
    Ok(Metric {
        delivery_id,
        metric,
        href: href.filter(|_| metric == MetricKind::Clicked),
        message_id,
    })
}

impl Metric {
    /// The event recorded on the person (or visitor): one per delivery and
    /// metric, so a message shown on every page counts as opened once.
    pub fn event(&self, now: i64) -> Event {
        let mut data = Object::new();
        data.insert("delivery_id".into(), json!(self.delivery_id));
        data.insert("metric".into(), json!(self.metric.as_str()));
        if let Some(href) = &self.href {
            data.insert("href".into(), json!(href));
        }
        if let Some(message_id) = &self.message_id {
            data.insert("message_id".into(), json!(message_id));
        }
        Event {
            kind: EventType::Event,
            name: format!("{METRIC_EVENT_PREFIX}{}", self.metric.as_str()),
            data,
            timestamp: now,
            anonymous_id: None,
            id: format!(
                "{METRIC_ID_PREFIX}{}:{}",
                self.metric.as_str(),
                self.delivery_id
            ),
        }
    }
}

/// The outbox entry for a recorded metric event: Customer.io's
/// `POST /api/v1/metrics` body (the "In-app" variant of its Track API
/// OpenAPI: `delivery_id`, `metric`, `timestamp`, `recipient`, `href`),
/// wrapped so delivery posts it there and not into a v2 batch. The v2
/// `delivery` entity is not used: its metric names exclude `clicked`.
/// `None` for any other event.
pub fn metric_op(event: &Event, recipient: Option<&str>) -> Option<Value> {
    let kind = event.id.strip_prefix(METRIC_ID_PREFIX)?.split(':').next()?;
    if !matches!(kind, "opened" | "clicked") {
        return None;
    }
    let delivery_id = event.data.get("delivery_id")?.as_str()?;
    let mut body = json!({
        "delivery_id": delivery_id,
        "metric": kind,
        "timestamp": event.timestamp,
    });
    if let Some(recipient) = recipient {
        body["recipient"] = json!(recipient);
    }
    if let Some(href) = event.data.get("href").and_then(Value::as_str) {
        body["href"] = json!(href);
    }
    Some(json!({ METRICS_KEY: body }))
}

/// The key that marks an outbox entry as a `/api/v1/metrics` body.
pub const METRICS_KEY: &str = "v1_metrics";
/// Where a metric goes, under the Track API base.
pub const METRICS_PATH: &str = "/api/v1/metrics";

/// The `/api/v1/metrics` body of an outbox entry `metric_op` made.
pub fn metrics_body(op: &Value) -> Option<&Value> {
    op.get(METRICS_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_served_bundle_is_the_pinned_package() {
        let manifest: Value = serde_json::from_str(include_str!("../../package.json")).unwrap();
        assert_eq!(
            manifest["devDependencies"]["customerio-gist-web"],
            json!(GIST_VERSION),
            "package.json pins the version /_cio/gist.js announces in its ETag"
        );
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "gist.js"), Some(Ok(InAppRoute::Bundle)));
        assert_eq!(route("HEAD", "gist.js"), Some(Ok(InAppRoute::Bundle)));
        assert_eq!(route("POST", "gist.js"), Some(Err(())));
        assert_eq!(
            route("GET", "in-app/session"),
            Some(Ok(InAppRoute::Session))
        );
        assert_eq!(route("POST", "in-app/session"), Some(Err(())));
        assert_eq!(route("POST", "in-app/metric"), Some(Ok(InAppRoute::Metric)));
        assert_eq!(route("GET", "in-app/metric"), Some(Err(())));
        assert_eq!(route("GET", "in-app/other"), None);
        assert_eq!(route("GET", "track.js"), None);
    }

    #[test]
    fn the_token_is_the_identifier_never_a_cio_id() {
        assert_eq!(token(None), Token::None);
        assert_eq!(
            token(Some(&Identifier::Id("u1".into()))),
            Token::Is("u1".into())
        );
        assert_eq!(
            token(Some(&Identifier::Email("a@b.co".into()))),
            Token::Is("a@b.co".into())
        );
        assert_eq!(
            token(Some(&Identifier::CioId("abc".into()))),
            Token::Lookup("abc".into())
        );
        assert_eq!(token_of(Some("u1"), Some("a@b.co")), Some("u1".into()));
        assert_eq!(token_of(None, Some("a@b.co")), Some("a@b.co".into()));
        assert_eq!(token_of(None, None), None);
    }

    #[test]
    fn session_answers_the_token_and_the_public_site_id() {
        let on = InApp {
            on: true,
            site_id: Some("site".into()),
            sdk: Sdk::FirstParty,
        };
        assert_eq!(
            session_body(Some("u1"), &on),
            json!({"token": "u1", "site_id": "site"})
        );
        assert_eq!(
            session_body(None, &InApp::default()),
            json!({"token": null, "site_id": null})
        );
    }

    #[test]
    fn metric_bodies_are_checked_field_by_field() {
        let m = parse_metric(&obj(json!({"delivery_id": "d1", "metric": "clicked", "href": "https://x.test/a", "message_id": "m"}))).unwrap();
        assert_eq!(m.metric, MetricKind::Clicked);
        assert_eq!(m.href.as_deref(), Some("https://x.test/a"));
        // An opened metric carries no link.
        let m = parse_metric(&obj(
            json!({"delivery_id": "d1", "metric": "opened", "href": "x"}),
        ))
        .unwrap();
        assert_eq!(m.href, None);
        for (body, field) in [
            (json!({"metric": "opened"}), "delivery_id"),
            (
                json!({"delivery_id": "", "metric": "opened"}),
                "delivery_id",
            ),
            (json!({"delivery_id": 5, "metric": "opened"}), "delivery_id"),
            (
                json!({"delivery_id": "x".repeat(121), "metric": "opened"}),
                "delivery_id",
            ),
            (
                json!({"delivery_id": "a\nb", "metric": "opened"}),
                "delivery_id",
            ),
            (json!({"delivery_id": "d"}), "metric"),
            (json!({"delivery_id": "d", "metric": "converted"}), "metric"),
            (
                json!({"delivery_id": "d", "metric": "clicked", "href": 1}),
                "href",
            ),
            (
                json!({"delivery_id": "d", "metric": "clicked", "message_id": ["m"]}),
                "message_id",
            ),
        ] {
            let err = parse_metric(&obj(body.clone())).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_recorded_metric_forwards_as_a_v1_metrics_body() {
        let m = parse_metric(&obj(
            json!({"delivery_id": "d1", "metric": "clicked", "href": "https://x.test/a"}),
        ))
        .unwrap();
        let event = m.event(1_700_000_000);
        assert_eq!(event.name, "in-app:clicked");
        assert_eq!(event.id, "in-app:clicked:d1");
        assert!(event.id.len() <= crate::core::event::MAX_EVENT_ID_BYTES);
        let op = metric_op(&event, Some("u1")).unwrap();
        assert_eq!(
            metrics_body(&op),
            Some(
                &json!({"delivery_id": "d1", "metric": "clicked", "timestamp": 1_700_000_000, "recipient": "u1", "href": "https://x.test/a"})
            )
        );
        let opened = parse_metric(&obj(json!({"delivery_id": "d1", "metric": "opened"})))
            .unwrap()
            .event(5);
        assert_eq!(
            metric_op(&opened, None),
            Some(json!({"v1_metrics": {"delivery_id": "d1", "metric": "opened", "timestamp": 5}}))
        );
        // Other events, even named alike, are ordinary events.
        let mut other = opened.clone();
        other.id = "browser:in-app:opened:d1".into();
        assert_eq!(metric_op(&other, None), None);
        other.id = "in-app:opened:d1".into();
        other.data.remove("delivery_id");
        assert_eq!(metric_op(&other, None), None);
        assert_eq!(metrics_body(&json!({"type": "person"})), None);
    }

    #[test]
    fn a_metric_is_posted_on_its_own_in_order() {
        let v2 = json!({"type": "person", "action": "event"});
        let metric = metric_op(
            &parse_metric(&obj(json!({"delivery_id": "d", "metric": "opened"})))
                .unwrap()
                .event(1),
            None,
        )
        .unwrap();
        let ops = [v2.clone(), v2.clone(), metric.clone(), metric, v2.clone()];
        assert_eq!(crate::cio::pack(&ops), vec![0..2, 2..3, 3..4, 4..5]);
        assert_eq!(crate::cio::pack(&[v2.clone(), v2]), vec![0..2]);
    }
}
