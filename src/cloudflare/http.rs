//! Outbound HTTP to Customer.io (the Track API batch, the metrics endpoint,
//! the Pipelines API): one POST through the runtime's own `fetch`, bound
//! directly. The `worker` crate's `Fetch` and `RequestInit` serialize their
//! `cf` options through serde on every request, code the wasm carried for
//! two call sites.

use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch, catch)]
    fn runtime_fetch(url: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

/// A POST to send.
pub struct Post<'a> {
    pub url: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a str,
    /// A redirect is answered as it came (its `Location`), never followed.
    pub manual_redirect: bool,
    /// One deadline for the whole exchange, the body included: a receiver
    /// that stalls its body is no answer.
    pub deadline: Duration,
}

/// What came back.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// A redirect's `Location` (with `manual_redirect`); its body is not read.
    pub location: Option<String>,
    pub text: String,
}

/// Why there is no answer, for the caller's error text.
pub enum Failure {
    BadRequest(String),
    Unreachable(String),
    TimedOut,
}

fn text_of(e: JsValue) -> String {
    worker::Error::from(e).to_string()
}

pub async fn post(post: Post<'_>) -> Result<Answer, Failure> {
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(|e| Failure::BadRequest(text_of(e)))?;
    for (name, value) in post.headers {
        headers
            .set(name, value)
            .map_err(|e| Failure::BadRequest(text_of(e)))?;
    }
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(post.body));
    if post.manual_redirect {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    let promise = runtime_fetch(post.url, &init).map_err(|e| Failure::BadRequest(text_of(e)))?;
    let manual = post.manual_redirect;
    let exchange = Box::pin(async move {
        let resp: web_sys::Response = JsFuture::from(promise).await?.unchecked_into();
        let status = resp.status();
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        let retry_after = header("retry-after");
        let location = header("location").filter(|_| manual && (300..400).contains(&status));
        let text = match location {
            Some(_) => String::new(),
            None => JsFuture::from(resp.text()?)
                .await?
                .as_string()
                .unwrap_or_default(),
        };
        Ok::<_, JsValue>(Answer {
            status,
            retry_after,
            location,
            text,
        })
    });
    let deadline = Box::pin(worker::Delay::from(post.deadline));
    match select(exchange, deadline).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(e), _)) => Err(Failure::Unreachable(text_of(e))),
        Either::Right(_) => Err(Failure::TimedOut),
    }
}
