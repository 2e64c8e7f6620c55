//! Tests of what exists only in the wasm build, run on wasm32 by
//! `wasm-bindgen-test-runner` under Node (`npm run test:wasm`): ids from the
//! runtime's crypto source, cookies on real `Headers`, error responses, and
//! the Durable Object call encoding as it crosses into JS and back.

use wasm_bindgen_test::wasm_bindgen_test;

use super::error::{render, EdgeError, ErrorShape};
use super::visit::{new_anon_id, new_event_id, now_secs};
use crate::core::cookies::read_cookies;
use crate::core::Error as ClientError;
use crate::identity::wire::{PersonCall, PersonReply};
use crate::identity::StoreError;

#[wasm_bindgen_test]
fn anonymous_ids_are_v4_uuids_the_cookie_reader_accepts() {
    let a = new_anon_id();
    let b = new_anon_id();
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4", "version 4");
    let cookies = read_cookies(Some(&format!("_cioanonid={a}")));
    assert_eq!(cookies.anon_id.as_deref(), Some(a.as_str()));
    assert_ne!(new_event_id(), new_event_id());
}

#[wasm_bindgen_test]
fn emails_are_normalised_by_the_runtime_as_natively() {
    use crate::core::identifier::normalize_email;
    // NFC and NFD spellings, and a lowercase that composes (J + caron).
    let nfc = normalize_email("\u{c5}ngstr\u{f6}m@X.co");
    let nfd = normalize_email("A\u{30a}ngstro\u{308}m@x.CO");
    assert_eq!(nfc, nfd);
    assert_eq!(nfc, "\u{e5}ngstr\u{f6}m@x.co");
    assert_eq!(normalize_email("J\u{30c}@x.co"), "\u{1f0}@x.co");
    assert_eq!(normalize_email(" Plain@Example.COM "), "plain@example.com");
    // Lowercase by the runtime as Rust's: final sigma, a mapping to two
    // characters, a letter without a lowercase.
    for text in [
        "\u{3a3}\u{391}\u{3a3} \u{3a3}\u{391}\u{3a3}",
        "\u{130}stanbul",
        "\u{1e9e}\u{23a}X",
        "\u{1f88}\u{10400}",
    ] {
        assert_eq!(
            crate::core::identifier::lowercase(text),
            text.to_lowercase(),
            "{text}"
        );
    }
}

#[wasm_bindgen_test]
fn the_clock_is_unix_seconds() {
    let now = now_secs();
    assert!(now > 1_700_000_000 && now < 4_000_000_000, "{now}");
}

#[wasm_bindgen_test]
fn errors_render_in_each_shape_with_each_cookie_its_own_header() {
    let e = EdgeError::Client(ClientError::invalid("name", "is required"));
    let mut browser = render(&e, ErrorShape::Browser);
    assert_eq!(browser.status_code(), 400);
    let unauthorized = render(&EdgeError::Unauthorized, ErrorShape::TrackV1);
    assert_eq!(
        unauthorized
            .headers()
            .get("www-authenticate")
            .unwrap()
            .as_deref(),
        Some("Basic realm=\"track\"")
    );
    let _ = browser.headers_mut().append("set-cookie", "a=1; Path=/");
    let _ = browser.headers_mut().append("set-cookie", "b=2; Path=/");
    let headers: web_sys::Headers = browser.headers().0.clone();
    let set_cookies: Vec<String> = js_sys::try_iter(&headers)
        .unwrap()
        .unwrap()
        .filter_map(|entry| entry.ok())
        .map(|entry| js_sys::Array::from(&entry))
        .filter(|pair| pair.get(0).as_string().as_deref() == Some("set-cookie"))
        .filter_map(|pair| pair.get(1).as_string())
        .collect();
    assert_eq!(set_cookies, vec!["a=1; Path=/", "b=2; Path=/"]);
}

#[wasm_bindgen_test]
fn object_calls_and_errors_survive_the_trip_through_js_json() {
    // The same path the RPC takes: serde -> JS string -> JSON.parse ->
    // JSON.stringify -> serde.
    let through_js = |text: String| -> String {
        let value = js_sys::JSON::parse(&text).unwrap();
        js_sys::JSON::stringify(&value)
            .unwrap()
            .as_string()
            .unwrap()
    };
    let call = PersonCall::Activity {
        limit: 7,
        before: None,
    };
    let back: PersonCall =
        serde_json::from_str(&through_js(serde_json::to_string(&call).unwrap())).unwrap();
    assert!(matches!(
        back,
        PersonCall::Activity {
            limit: 7,
            before: None
        }
    ));
    for error in [
        StoreError::Client(ClientError::conflict("email", "taken")),
        StoreError::Client(ClientError::TooLarge {
            message: "big".into(),
        }),
        StoreError::Client(ClientError::not_found("no such person")),
        StoreError::unavailable("down"),
    ] {
        let reply: Result<PersonReply, StoreError> = Err(error.clone());
        let text = through_js(serde_json::to_string(&reply).unwrap());
        let back: Result<PersonReply, StoreError> = serde_json::from_str(&text).unwrap();
        assert_eq!(back.err(), Some(error), "every variant arrives as itself");
    }
}
