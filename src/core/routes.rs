//! The route table: every (method, path) the edge answers itself, and the
//! proxy for everything else (docs/API.md section 2). Pure, so the whole
//! table is tested natively; `edge::router` maps each route to its handler.

use percent_encoding::percent_decode_str;

use super::event::EventType;

/// The reserved prefix; everything else belongs to the site.
pub const PREFIX: &str = "/_cio/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /_cio/identify`
    Identify,
    /// `POST /_cio/track` and `POST /_cio/page`
    Track(EventType),
    /// `POST /_cio/reset`
    Reset,
    /// `GET|HEAD /_cio/track.js`
    Sdk,
    /// The Track API; the path segments after its root (`v1`, `customers`, ..).
    TrackApi(Vec<String>),
    /// `/_cio/admin/...`; the segments after `admin/`.
    Admin(Vec<String>),
    /// `/_cio/cdp/...`, the Data Pipelines source; the segments after `cdp/`.
    Cdp(Vec<String>),
    /// `/_cio/gist.js`, `/_cio/in-app/...` (the `inapp` feature).
    InApp(InAppRoute),
    /// Everything outside `/_cio/`.
    Proxy,
    /// A known path with the wrong method.
    MethodNotAllowed,
    NotFound,
}

/// Path segments, each percent-decoded (the one decoder for every route).
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Where a request goes. `on_track_host`: the request came to the
/// `TRACK_API_HOST`, which serves the Track API at `/api/`.
pub fn route(method: &str, path: &str, on_track_host: bool) -> Route {
    if on_track_host {
        if let Some(api) = path.strip_prefix("/api/") {
            return Route::TrackApi(segments(api));
        }
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Route::Proxy;
    };
    let post = method == "POST";
    match rest {
        "identify" if post => Route::Identify,
        "track" if post => Route::Track(EventType::Event),
        "page" if post => Route::Track(EventType::Page),
        "reset" if post => Route::Reset,
        "identify" | "track" | "page" | "reset" => Route::MethodNotAllowed,
        "track.js" if matches!(method, "GET" | "HEAD") => Route::Sdk,
        "track.js" => Route::MethodNotAllowed,
        _ => {
            if let Some(found) = in_app_route(method, rest) {
                found.map_or(Route::MethodNotAllowed, Route::InApp)
            } else if let Some(api) = rest.strip_prefix("api/") {
                Route::TrackApi(segments(api))
            } else if let Some(admin) = rest.strip_prefix("admin/") {
                Route::Admin(segments(admin))
            } else if let Some(cdp) = rest.strip_prefix("cdp/") {
                Route::Cdp(segments(cdp))
            } else {
                Route::NotFound
            }
        }
    }
}

/// The in-app endpoints under `/_cio/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InAppRoute {
    /// `GET|HEAD /_cio/gist.js`
    Bundle,
    /// `GET /_cio/in-app/session`
    Session,
    /// `POST /_cio/in-app/metric`
    Metric,
}

/// The in-app route for a path after `/_cio/`: `None` when it is not one,
/// `Some(Err(()))` for one of ours with the wrong method.
pub fn in_app_route(method: &str, rest: &str) -> Option<Result<InAppRoute, ()>> {
    let get = matches!(method, "GET" | "HEAD");
    Some(match rest {
        "gist.js" if get => Ok(InAppRoute::Bundle),
        "in-app/session" if get => Ok(InAppRoute::Session),
        "in-app/metric" if method == "POST" => Ok(InAppRoute::Metric),
        "gist.js" | "in-app/session" | "in-app/metric" => Err(()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let cases: &[(&str, &str, bool, Route)] = &[
            ("GET", "/", false, Route::Proxy),
            ("POST", "/api/v1/customers/1", false, Route::Proxy),
            ("GET", "/_cio", false, Route::Proxy),
            ("POST", "/_cio/identify", false, Route::Identify),
            ("GET", "/_cio/identify", false, Route::MethodNotAllowed),
            ("POST", "/_cio/track", false, Route::Track(EventType::Event)),
            ("POST", "/_cio/page", false, Route::Track(EventType::Page)),
            ("POST", "/_cio/reset", false, Route::Reset),
            ("GET", "/_cio/track.js", false, Route::Sdk),
            ("HEAD", "/_cio/track.js", false, Route::Sdk),
            ("POST", "/_cio/track.js", false, Route::MethodNotAllowed),
            ("GET", "/_cio/nope", false, Route::NotFound),
            (
                "GET",
                "/_cio/gist.js",
                false,
                Route::InApp(InAppRoute::Bundle),
            ),
            (
                "DELETE",
                "/_cio/in-app/session",
                false,
                Route::MethodNotAllowed,
            ),
            (
                "PUT",
                "/_cio/api/v1/customers/a%40b.co",
                false,
                Route::TrackApi(vec!["v1".into(), "customers".into(), "a@b.co".into()]),
            ),
            (
                "PUT",
                "/api/v1/customers/7",
                true,
                Route::TrackApi(vec!["v1".into(), "customers".into(), "7".into()]),
            ),
            ("GET", "/other", true, Route::Proxy),
            (
                "GET",
                "/_cio/admin/people/x%2Fy",
                false,
                Route::Admin(vec!["people".into(), "x/y".into()]),
            ),
            (
                "POST",
                "/_cio/cdp/v1/t",
                false,
                Route::Cdp(vec!["v1".into(), "t".into()]),
            ),
        ];
        for (method, path, host, want) in cases {
            assert_eq!(&route(method, path, *host), want, "{method} {path}");
        }
    }
}
