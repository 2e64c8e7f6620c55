//! The page-request decision, made in one synchronous call: from the raw
//! inputs (method, URL, a few headers) and the settings, either a *forward*
//! plan that a thin JS driver executes with `fetch` (headers toward the
//! origin, `Set-Cookie` values to append, the snippet to inject), or a reason
//! to hand the request to the async handler (then `super::step` goes on).
//! The plan travels to the driver as text, written and read by the codec.

use crate::cdp::ids::document_cookies;
use crate::config::{Config, ConfigError};
use crate::core::identifier::Identifier;
use crate::core::routes::{self, Route};

pub use super::inputs::Inputs;
use super::inputs::{link_param, small_form};
pub use super::origin::Forward;
use super::origin::{forward, untracked};
use super::visit::PageRequest;

/// The one prefix the edge keeps for itself; everything else is the site's.
pub use crate::core::routes::PREFIX;

/// Why a request goes to the async handler rather than straight to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Under `/_cio/`: an endpoint of ours.
    Reserved,
    /// On `TRACK_API_HOST` under `/api/`.
    TrackApiHost,
    /// A `_cio_id` link to look up.
    Link,
    /// A small form post to read (`AUTO_IDENTIFY_FORMS`).
    Form,
    /// An HTML navigation to record (`EDGE_PAGE_VIEWS`).
    PageView,
    /// A setting is broken: every request answers the error.
    BadSetting,
    /// A URL the runtime should never hand over; the async handler answers it.
    BadUrl,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Reserved,
        Reason::TrackApiHost,
        Reason::Link,
        Reason::Form,
        Reason::PageView,
        Reason::BadSetting,
        Reason::BadUrl,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Reserved => "reserved",
            Reason::TrackApiHost => "track-api-host",
            Reason::Link => "link",
            Reason::Form => "form",
            Reason::PageView => "page-view",
            Reason::BadSetting => "bad-setting",
            Reason::BadUrl => "bad-url",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Forward(Forward),
    Rust(Reason),
}

/// Decides a request. `new_anon_id` is called only when the visitor needs one.
pub fn plan(
    config: Result<&Config, &ConfigError>,
    inputs: &Inputs,
    new_anon_id: impl FnOnce() -> String,
) -> Plan {
    let Ok(config) = config else {
        return Plan::Rust(Reason::BadSetting);
    };
    let Some(page) = PageRequest::read(inputs, &config.trust) else {
        return Plan::Rust(Reason::BadUrl);
    };
    // The route table decides what is ours; everything else is the site's.
    let on_track_host = config.track_api_host.as_deref() == Some(page.url.host);
    match routes::route(inputs.method, page.url.path, on_track_host) {
        Route::Proxy => {}
        Route::TrackApi(_) if on_track_host && !page.url.path.starts_with(PREFIX) => {
            return Plan::Rust(Reason::TrackApiHost)
        }
        _ => return Plan::Rust(Reason::Reserved),
    }
    if !config.consent.allows(inputs.cookie, inputs.sec_gpc) {
        return Plan::Forward(untracked(config, page.url));
    }
    if config.auto_identify_links && config.trust.honours_links() && link_param(&page.url).is_some()
    {
        return Plan::Rust(Reason::Link);
    }
    if config.auto_identify_forms && small_form(inputs).is_some() {
        return Plan::Rust(Reason::Form);
    }
    if config.edge_page_views && page.html_navigation {
        return Plan::Rust(Reason::PageView);
    }
    let anon = page.visit.anon(new_anon_id);
    let identifier = page
        .visit
        .cookies
        .identifier
        .as_ref()
        .map(Identifier::as_written);
    let mut set_cookies: Vec<String> = page
        .anon_cookie(&config.cookies, &anon)
        .into_iter()
        .collect();
    // The Data Pipelines SDK's id cookies on a document (`CIO_CDP_WRITE_KEY`).
    if page.html_navigation {
        set_cookies.extend(document_cookies(
            config,
            inputs.cookie,
            page.url.host,
            page.visit.https,
            &anon.id,
            identifier.as_deref(),
        ));
    }
    Plan::Forward(forward(
        config,
        page.url,
        inputs.method,
        &anon.id,
        identifier.as_deref(),
        set_cookies,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode_forward, decode_inputs, encode};
    use super::super::origin::{injects, ANON_HEADER, ID_HEADER};
    use super::super::test_kit::{config, get, ANON, NEW};
    use super::*;
    use crate::core::snippet::{SNIPPET, SNIPPET_IN_APP};

    fn text(f: &Forward) -> String {
        encode(&Plan::Forward(f.clone()))
    }

    fn anon_id_of(text: &str) -> Option<&str> {
        decode_forward(text).unwrap().header(ANON_HEADER)
    }

    fn decide(config: &Result<Config, ConfigError>, inputs: &Inputs) -> Plan {
        plan(config.as_ref(), inputs, || NEW.to_owned())
    }

    fn forwarded(plan: Plan) -> Forward {
        match plan {
            Plan::Forward(f) => f,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    fn header<'f>(f: &'f Forward, name: &str) -> Option<Option<&'f str>> {
        f.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref())
    }

    #[test]
    fn returning_visitor_is_forwarded_without_a_cookie() {
        let c = config(&[]);
        let cookie = format!("a=1; _cioanonid={ANON}");
        let inputs = Inputs {
            cookie: Some(&cookie),
            ..get("https://shop.example.com/p/1?q=2")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(f.target, "http://127.0.0.1:9000/base/p/1?q=2");
        assert_eq!(f.timeout_ms, 15_000);
        assert!(f.set_cookies.is_empty());
        assert_eq!(header(&f, ANON_HEADER), Some(Some(ANON)));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert_eq!(header(&f, "host"), Some(None));
        assert_eq!(
            header(&f, "x-forwarded-host"),
            Some(Some("shop.example.com"))
        );
        assert_eq!(header(&f, "x-forwarded-proto"), Some(Some("https")));
        assert_eq!(f.snippet, None);
    }

    #[test]
    fn first_visit_gets_a_new_id_and_its_cookie() {
        let c = config(&[]);
        let f = forwarded(decide(&c, &get("http://x.test/")));
        assert_eq!(header(&f, ANON_HEADER), Some(Some(NEW)));
        assert_eq!(f.set_cookies.len(), 1);
        assert!(f.set_cookies[0].starts_with(&format!("_cioanonid={NEW};")));
        assert!(!f.set_cookies[0].contains("Secure"));
        // A forged value is replaced, never echoed.
        let inputs = Inputs {
            cookie: Some("_cioanonid=not-an-id"),
            ..get("https://x.test/")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(header(&f, ANON_HEADER), Some(Some(NEW)));
        assert!(f.set_cookies[0].contains("Secure"));
        assert!(!text(&f).contains("not-an-id"));
    }

    #[test]
    fn identified_visitor_tells_the_origin() {
        let c = config(&[]);
        let cookie = format!("_cioanonid={ANON}; _cioid=Bob%40Example.com");
        let inputs = Inputs {
            cookie: Some(&cookie),
            ..get("http://x.test/")
        };
        let f = forwarded(decide(&c, &inputs));
        assert_eq!(header(&f, ID_HEADER), Some(Some("bob@example.com")));
        assert!(f.set_cookies.is_empty());
    }

    #[test]
    fn navigation_refreshes_the_anonymous_cookie() {
        let c = config(&[]);
        let cookie = format!("_cioanonid={ANON}");
        for (mode, accept, refresh) in [
            (Some("navigate"), None, true),
            (Some("cors"), Some("text/html"), false),
            (None, Some("text/html,application/xhtml+xml"), true),
            (None, Some("*/*"), false),
            (None, None, false),
        ] {
            let inputs = Inputs {
                cookie: Some(&cookie),
                sec_fetch_mode: mode,
                accept,
                ..get("http://x.test/")
            };
            let f = forwarded(decide(&c, &inputs));
            assert_eq!(f.set_cookies.len(), refresh as usize, "{mode:?} {accept:?}");
            if refresh {
                assert!(f.set_cookies[0].starts_with(&format!("_cioanonid={ANON};")));
            }
        }
        // A POST is never a navigation.
        let inputs = Inputs {
            method: "POST",
            cookie: Some(&cookie),
            sec_fetch_mode: Some("navigate"),
            ..get("http://x.test/")
        };
        assert!(forwarded(decide(&c, &inputs)).set_cookies.is_empty());
    }

    #[test]
    fn hands_to_rust_for_each_reason() {
        let c = config(&[]);
        let cases = [
            ("http://x.test/_cio/track.js", Reason::Reserved),
            ("http://x.test/_cio/api/v1/customers/a", Reason::Reserved),
            ("http://x.test/page?_cio_id=abc123", Reason::Link),
            ("http://x.test/page?a=1&_cio_id=abc123", Reason::Link),
        ];
        for (url, reason) in cases {
            assert_eq!(decide(&c, &get(url)), Plan::Rust(reason), "{url}");
        }
        // Not ours: a look-alike path, a malformed link id, links switched off.
        for url in [
            "http://x.test/_cio",
            "http://x.test/x/_cio/",
            "http://x.test/?_cio_id=a-b",
        ] {
            forwarded(decide(&c, &get(url)));
        }
        let off = config(&[("AUTO_IDENTIFY_LINKS", "false")]);
        forwarded(decide(&off, &get("http://x.test/page?_cio_id=abc123")));

        let host = config(&[("TRACK_API_HOST", "track.example.com")]);
        assert_eq!(
            decide(&host, &get("https://track.example.com/api/v1/customers/a")),
            Plan::Rust(Reason::TrackApiHost)
        );
        forwarded(decide(&host, &get("https://track.example.com/other")));
        forwarded(decide(&host, &get("https://www.example.com/api/v1/x")));

        let views = config(&[("EDGE_PAGE_VIEWS", "true")]);
        let nav = Inputs {
            sec_fetch_mode: Some("navigate"),
            ..get("http://x.test/")
        };
        assert_eq!(decide(&views, &nav), Plan::Rust(Reason::PageView));
        forwarded(decide(&views, &get("http://x.test/api/data")));
    }

    #[test]
    fn small_form_posts_go_to_rust_when_forms_identify() {
        let forms = config(&[("AUTO_IDENTIFY_FORMS", "true")]);
        let post = |ct: &'static str, len: &'static str| Inputs {
            method: "POST",
            content_type: Some(ct),
            content_length: Some(len),
            ..get("http://x.test/signup")
        };
        assert_eq!(
            decide(&forms, &post("application/x-www-form-urlencoded", "20")),
            Plan::Rust(Reason::Form)
        );
        assert_eq!(
            decide(&forms, &post("multipart/form-data; boundary=x", "200")),
            Plan::Rust(Reason::Form)
        );
        forwarded(decide(&forms, &post("application/json", "20")));
        forwarded(decide(
            &forms,
            &post("application/x-www-form-urlencoded", "9999999"),
        ));
        forwarded(decide(
            &forms,
            &post("application/x-www-form-urlencoded", "many"),
        ));
        let off = config(&[]);
        forwarded(decide(
            &off,
            &post("application/x-www-form-urlencoded", "20"),
        ));
    }

    #[test]
    fn a_bad_setting_or_url_goes_to_rust() {
        let bad = config(&[("COOKIE_SECURE", "maybe")]);
        assert!(bad.is_err());
        assert_eq!(
            decide(&bad, &get("http://x.test/")),
            Plan::Rust(Reason::BadSetting)
        );
        let c = config(&[]);
        assert_eq!(decide(&c, &get("not a url")), Plan::Rust(Reason::BadUrl));
        assert_eq!(decide(&c, &Inputs::default()), Plan::Rust(Reason::BadUrl));
    }

    #[test]
    fn host_names_are_ascii() {
        // idna_adapter 1.0: no Unicode back end; punycode is taken as written.
        let bad = config(&[("ORIGIN_URL", "http://bücher.example")]);
        assert_eq!(bad.unwrap_err().setting, "ORIGIN_URL");
        let ok = config(&[("ORIGIN_URL", "http://xn--bcher-kva.example")]);
        assert_eq!(ok.unwrap().origin.host_str(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn injection_on_and_off() {
        let on = config(&[("INJECT_SNIPPET", "true")]);
        assert_eq!(
            forwarded(decide(&on, &get("http://x.test/"))).snippet,
            Some(SNIPPET)
        );
        let head = Inputs {
            method: "HEAD",
            ..get("http://x.test/")
        };
        assert_eq!(forwarded(decide(&on, &head)).snippet, None);
        let off = config(&[]);
        assert_eq!(
            forwarded(decide(&off, &get("http://x.test/"))).snippet,
            None
        );
        let in_app = config(&[("INJECT_SNIPPET", "true"), ("IN_APP", "true")]);
        assert_eq!(
            forwarded(decide(&in_app, &get("http://x.test/"))).snippet,
            Some(SNIPPET_IN_APP)
        );

        assert!(injects(200, Some("text/html; charset=utf-8")));
        assert!(injects(200, Some("TEXT/HTML")));
        assert!(!injects(404, Some("text/html")));
        assert!(!injects(200, Some("application/json")));
        assert!(!injects(200, Some("text/htm")));
        assert!(!injects(200, None));
    }

    #[test]
    fn plan_text_round_trip() {
        let c = config(&[("INJECT_SNIPPET", "true")]);
        let cookie = "_cioid=user%201";
        let inputs = Inputs {
            cookie: Some(cookie),
            ..get("http://x.test/a?b=c")
        };
        let f = forwarded(decide(&c, &inputs));
        let text = text(&f);
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[0], "forward");
        assert_eq!(lines[1], "http://127.0.0.1:9000/base/a?b=c");
        assert_eq!(lines[2], "15000");
        assert_eq!(lines[3], SNIPPET);
        assert!(!SNIPPET.contains('\n'));
        assert!(lines.contains(&"dhost"));
        assert!(lines.contains(&"hx-forwarded-proto:http"));
        assert!(lines.contains(&format!("h{ID_HEADER}:user 1").as_str()));
        assert!(lines.contains(&format!("h{ANON_HEADER}:{NEW}").as_str()));
        let cookies = decode_forward(&text).unwrap().set_cookies;
        assert_eq!(
            cookies,
            f.set_cookies.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(cookies.len(), 1);
        assert_eq!(encode(&Plan::Rust(Reason::Link)), "rust link");
    }

    #[test]
    fn secure_mode_ignores_an_unsigned_cioid_and_encodes_the_header() {
        use crate::core::secure::{Secret, SIG_COOKIE};
        let c = config(&[("IDENTIFY_SECRET", "k")]);
        let signed = Secret::new("k").companion(&Identifier::Id("ünï".into()));
        for (cookie, want) in [
            (format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF"), None),
            (
                format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF; {SIG_COOKIE}=00"),
                None,
            ),
            (
                format!("_cioanonid={ANON}; _cioid=%C3%BCn%C3%AF; {SIG_COOKIE}={signed}"),
                Some("%C3%BCn%C3%AF"),
            ),
        ] {
            let inputs = Inputs {
                cookie: Some(&cookie),
                ..get("http://x.test/")
            };
            let f = forwarded(decide(&c, &inputs));
            assert_eq!(header(&f, ID_HEADER), Some(want), "{cookie}");
            assert_eq!(header(&f, ANON_HEADER), Some(Some(ANON)));
        }
    }

    /// Item: in secure mode a link is no identity, so the page needs no
    /// lookup: it is forwarded as any other, with no `_cioid`.
    #[test]
    fn secure_mode_ignores_links() {
        let link = get("http://x.test/p?_cio_id=abc123");
        assert_eq!(decide(&config(&[]), &link), Plan::Rust(Reason::Link));
        let secure = config(&[("IDENTIFY_SECRET", "k")]);
        let f = forwarded(decide(&secure, &link));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert!(f.set_cookies.iter().all(|c| !c.starts_with("_cioid=")));
    }

    #[test]
    fn without_consent_the_page_is_the_origins() {
        let gpc = config(&[
            ("CONSENT", "gpc"),
            ("INJECT_SNIPPET", "true"),
            ("EDGE_PAGE_VIEWS", "true"),
        ]);
        let nav = Inputs {
            sec_fetch_mode: Some("navigate"),
            sec_gpc: Some("1"),
            cookie: Some("_cioid=bob"),
            ..get("http://x.test/p?_cio_id=abc123")
        };
        let f = forwarded(decide(&gpc, &nav));
        assert!(f.set_cookies.is_empty());
        assert_eq!(f.snippet, None);
        assert_eq!(header(&f, ANON_HEADER), Some(None));
        assert_eq!(header(&f, ID_HEADER), Some(None));
        assert_eq!(anon_id_of(&text(&f)), None);
        // Without the signal: as today (here, an edge page view and a link).
        let nav = Inputs {
            sec_gpc: None,
            ..nav
        };
        assert_eq!(decide(&gpc, &nav), Plan::Rust(Reason::Link));
        let cookie = config(&[("CONSENT", "cookie:ok=1")]);
        let before = forwarded(decide(&cookie, &get("http://x.test/")));
        assert!(before.set_cookies.is_empty());
        let consented = Inputs {
            cookie: Some("ok=1"),
            ..get("http://x.test/")
        };
        let after = forwarded(decide(&cookie, &consented));
        assert_eq!(after.set_cookies.len(), 1);
        assert_eq!(anon_id_of(&text(&after)), Some(NEW));
        assert!(text(&after).ends_with("\nrx-cio-identify\nrx-cio-reset"));
    }

    proptest::proptest! {
        #![proptest_config(crate::core::fuzz_config(2000))]
        #[test]
        fn plan_never_panics_and_never_breaks_a_line(raw in ".{0,400}") {
            let open = config(&[("INJECT_SNIPPET", "true")]);
            let secure = config(&[
                ("INJECT_SNIPPET", "true"),
                ("IDENTIFY_SECRET", "k"),
                ("CONSENT", "cookie:ok=1"),
                ("ID_COOKIE", "cio"),
            ]);
            let inputs = decode_inputs(&raw);
            for c in [&open, &secure] {
                if let Plan::Forward(f) = &decide(c, &inputs) {
                    for (name, v) in &f.headers {
                        let v = v.as_deref().unwrap_or("");
                        proptest::prop_assert!(!v.contains(['\n', '\r']));
                        // The identifier never reaches the origin as raw UTF-8.
                        proptest::prop_assert!(*name != ID_HEADER || v.is_ascii());
                    }
                    proptest::prop_assert!(!f.target.contains(['\n', '\r']));
                    // What is written reads back as the same plan.
                    let t = text(f);
                    let back = decode_forward(&t).unwrap();
                    proptest::prop_assert_eq!(back.set_cookies.len(), f.set_cookies.len());
                    proptest::prop_assert_eq!(back.headers.len(), f.headers.len());
                }
            }
        }
    }
}
