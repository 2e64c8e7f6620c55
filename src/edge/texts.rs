//! The static scripts the edge serves (`/_cio/track.js`, `/_cio/gist.js`):
//! their bytes stay in JS, Text modules beside the bundle read on first use
//! (`js/texts.mjs`), out of the wasm; the routes here decide the headers.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::Response;

use super::error::EdgeError;

#[wasm_bindgen(module = "/js/texts.mjs")]
extern "C" {
    /// A `Response` of `status` with `headers`, carrying the text on 200.
    async fn text_response(name: &str, status: u16, headers: web_sys::Headers) -> JsValue;
}

/// A script of the build.
#[derive(Clone, Copy)]
pub enum Text {
    /// The browser SDK (`assets/track.js`).
    Track,
    /// The pinned in-app SDK (`customerio-gist-web`).
    Gist,
}

/// `status` (200 or 304) with `headers`, and the text's bytes on 200.
pub async fn respond(
    text: Text,
    status: u16,
    headers: worker::Headers,
) -> Result<Response, EdgeError> {
    let (name, what) = match text {
        Text::Track => ("track", "the browser SDK"),
        Text::Gist => ("gist", "the in-app bundle"),
    };
    let response: web_sys::Response = text_response(name, status, headers.0)
        .await
        .dyn_into()
        .map_err(|_| EdgeError::Storage(format!("{what} is missing from the build")))?;
    Ok(Response::from(response))
}
