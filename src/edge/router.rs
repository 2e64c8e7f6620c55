//! Each route of `core::routes` and the handler that answers it; errors are
//! rendered once, in the shape of the API they belong to.

use url::Url;
use worker::Response;

use super::error::{render, EdgeError, ErrorShape};
use super::request::Request;
use super::visit::{self, consented};
use super::{admin, browser, cdp, inapp, limits, page, track_api, Edge};
use crate::core::routes::{route, Route};

/// Answers a request the plan handed to Rust: a response, or for a page
/// request whose async work is done, a forward plan for the driver.
pub async fn serve(req: Request, edge: &Edge) -> worker::Result<page::Answer> {
    let url = req.url()?;
    let on_track_host = edge
        .config
        .track_api_host
        .as_deref()
        .is_some_and(|h| url.host_str() == Some(h));
    let method = req.method().to_string();
    let route = route(&method, url.path(), on_track_host);
    let shape = match &route {
        Route::TrackApi(segments) => track_api::shape(segments),
        _ => ErrorShape::Browser,
    };
    if route == Route::Proxy {
        return Ok(page::serve(req, edge, url).await);
    }
    Ok(page::Answer::Respond(
        answer(route, req, edge, &url)
            .await
            .unwrap_or_else(|e| render(&e, shape)),
    ))
}

async fn answer(route: Route, req: Request, edge: &Edge, url: &Url) -> Result<Response, EdgeError> {
    // Another site's page may not write here (login CSRF): refused before
    // anything else is looked at.
    let browser_write = matches!(
        route,
        Route::Identify
            | Route::Track(_)
            | Route::Reset
            | Route::InApp(crate::inapp::InAppRoute::Metric)
    ) || (matches!(route, Route::Cdp(_))
        && req.method() == worker::Method::Post);
    if browser_write {
        browser::same_site_only(&req, url)?;
    }
    match route {
        Route::TrackApi(segments) => track_api::serve(req, edge, &segments).await,
        Route::Admin(segments) => admin::serve(req, edge, url, &segments).await,
        Route::Cdp(segments) => cdp::serve(req, edge, url, &segments).await,
        // Without consent (`CONSENT`) a browser call stores nothing: 204.
        Route::Identify
        | Route::Track(_)
        | Route::Reset
        | Route::InApp(crate::inapp::InAppRoute::Metric)
            if !consented(&req, &edge.config.consent) =>
        {
            Ok(no_content())
        }
        Route::Identify => {
            let visit = visit::read(&req, url, &edge.config.trust);
            limits::browser_write(edge, &req, visit.cookies.anon_id.as_deref(), None).await?;
            browser::identify(req, edge, visit).await
        }
        Route::Track(kind) => {
            let visit = visit::read(&req, url, &edge.config.trust);
            limits::browser_write(
                edge,
                &req,
                visit.cookies.anon_id.as_deref(),
                visit.cookies.identifier.as_ref(),
            )
            .await?;
            browser::track(req, edge, visit, kind).await
        }
        Route::Reset => Ok(browser::reset(
            edge,
            &visit::read(&req, url, &edge.config.trust),
        )),
        Route::Sdk => browser::sdk(&req).await,
        Route::InApp(route) => inapp::serve(route, req, edge).await,
        Route::MethodNotAllowed => Err(EdgeError::MethodNotAllowed),
        Route::NotFound | Route::Proxy => Err(EdgeError::NoRoute),
    }
}

/// 204 without storing anything (no consent), never cached.
pub(super) fn no_content() -> Response {
    let headers = worker::Headers::new();
    let _ = headers.set("cache-control", "no-store");
    Response::builder()
        .with_status(204)
        .with_headers(headers)
        .empty()
}
