//! The request the async handler serves, over the runtime's own `Request`:
//! its method, headers and body are read only where a handler asks. The
//! `worker` crate's `Request`, made from every incoming request, reads the
//! runtime's `cf` object, the URL and the headers up front; no handler here
//! uses `cf`. The methods mirror the ones the handlers used.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{Headers, Method};

/// The body as it arrives, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, JsValue>>>>;

pub struct Request {
    inner: web_sys::Request,
    headers: Headers,
    body_used: bool,
}

impl From<web_sys::Request> for Request {
    fn from(inner: web_sys::Request) -> Self {
        Request {
            headers: Headers(inner.headers()),
            inner,
            body_used: false,
        }
    }
}

impl Request {
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn method(&self) -> Method {
        Method::from(self.inner.method())
    }

    pub fn url(&self) -> worker::Result<url::Url> {
        let url = self.inner.url();
        url.parse()
            .map_err(|e| worker::Error::RustError(format!("failed to parse Url from {e}: {url}")))
    }

    fn take_body(&mut self) -> worker::Result<()> {
        if std::mem::replace(&mut self.body_used, true) {
            return Err(worker::Error::BodyUsed);
        }
        Ok(())
    }

    pub async fn bytes(&mut self) -> worker::Result<Vec<u8>> {
        self.take_body()?;
        let buffer = JsFuture::from(self.inner.array_buffer()?).await?;
        Ok(js_sys::Uint8Array::new(&buffer).to_vec())
    }

    /// The body as a stream of chunks; an error when there is no body.
    pub fn stream(&mut self) -> worker::Result<ByteStream> {
        self.take_body()?;
        let body = self
            .inner
            .body()
            .ok_or_else(|| worker::Error::RustError("no body for request".into()))?;
        let stream = wasm_streams::ReadableStream::from_raw(body.unchecked_into()).into_stream();
        Ok(Box::pin(stream.map(|chunk| {
            chunk.map(|chunk| js_sys::Uint8Array::new(&chunk).to_vec())
        })))
    }
}
