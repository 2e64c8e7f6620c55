//! Browser writes another site's page makes (login CSRF, docs/API.md
//! section 3): a cross-site page can send a browser endpoint a "simple"
//! request without asking (a form post, `sendBeacon`, a `no-cors` fetch),
//! and a top-level form post's answer sets cookies. Every such request
//! either says where it comes from (`Sec-Fetch-Site`, `Origin`) or carries a
//! form content type, so one check refuses them all. The site's own calls
//! (`track.js`'s `fetch` and `sendBeacon`) are same-origin; a client that is
//! no browser sends neither header and holds no visitor's cookies, so it
//! passes. Pure: every endpoint a browser writes to calls [`check`].

use super::error::Error;

/// The headers a browser write is judged by.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteHeaders<'a> {
    /// The request URL's origin, as `url::Url::origin().ascii_serialization()`
    /// writes it (`http://127.0.0.1:8787`, `https://www.example.com`).
    pub own_origin: &'a str,
    pub sec_fetch_site: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

/// Content types only an HTML form sends: never a JSON call's, and each
/// sendable cross-site without a CORS preflight. (`text/plain`, the third
/// such type, is what `sendBeacon` sends, so it is judged by origin alone.)
const FORM_TYPES: [&str; 2] = ["application/x-www-form-urlencoded", "multipart/form-data"];

/// Refuses a browser write that another site's page made: 415 for a form
/// content type, 403 naming `sec-fetch-site` when the browser says the call
/// is not same-origin (`same-origin`, and `none` for one the user started,
/// pass), else 403 naming `origin` when an `Origin` header names another
/// origin (or `null`). Neither header: not a browser page's call; it passes.
pub fn check(h: &WriteHeaders) -> Result<(), Error> {
    let essence = h
        .content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if let Some(form) = essence.filter(|t| FORM_TYPES.contains(&t.as_str())) {
        return Err(Error::MediaType {
            message: format!(
                "content-type: {form} is a form's; browser endpoints take a JSON body (application/json, or text/plain as sendBeacon sends)"
            ),
        });
    }
    if let Some(site) = h.sec_fetch_site {
        let site = site.trim().to_ascii_lowercase();
        if site == "same-origin" || site == "none" {
            return Ok(());
        }
        return Err(Error::CrossSite {
            field: "sec-fetch-site".into(),
            message: format!(
                "sec-fetch-site: a {site} request may not write here; only the site's own pages may"
            ),
        });
    }
    match h.origin.map(str::trim) {
        Some(origin) if !origin.eq_ignore_ascii_case(h.own_origin) => Err(Error::CrossSite {
            field: "origin".into(),
            message: format!(
                "origin: a request from {origin:?} may not write here; only the site's own pages may"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "https://www.example.com";

    fn judge(
        sec_fetch_site: Option<&str>,
        origin: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<(), (u16, Option<String>)> {
        check(&WriteHeaders {
            own_origin: OWN,
            sec_fetch_site,
            origin,
            content_type,
        })
        .map_err(|e| (e.status(), e.field().map(str::to_owned)))
    }

    #[test]
    fn the_sites_own_calls_and_other_clients_pass() {
        let beacon = Some("text/plain;charset=UTF-8");
        let json = Some("application/json");
        for (site, origin, ct) in [
            // track.js: fetch with JSON, sendBeacon with text.
            (Some("same-origin"), Some(OWN), json),
            (Some("same-origin"), Some(OWN), beacon),
            (Some("none"), None, json),
            // Browsers without Fetch Metadata still send Origin on a POST.
            (None, Some(OWN), beacon),
            (None, Some("HTTPS://WWW.EXAMPLE.COM"), json),
            // A server-side client: neither header.
            (None, None, json),
            (None, None, None),
            (None, None, Some("application/octet-stream")),
        ] {
            assert_eq!(
                judge(site, origin, ct),
                Ok(()),
                "{site:?} {origin:?} {ct:?}"
            );
        }
    }

    /// Item: login CSRF from another site's page is refused.
    #[test]
    fn cross_site_writes_are_refused_naming_the_header() {
        let field = |f: &str| Err((403, Some(f.to_owned())));
        assert_eq!(
            judge(
                Some("cross-site"),
                Some("https://evil.test"),
                Some("text/plain")
            ),
            field("sec-fetch-site")
        );
        assert_eq!(
            judge(Some("same-site"), Some("https://blog.example.com"), None),
            field("sec-fetch-site")
        );
        assert_eq!(
            judge(Some("CROSS-SITE"), None, None),
            field("sec-fetch-site")
        );
        assert_eq!(
            judge(None, Some("https://evil.test"), Some("text/plain")),
            field("origin")
        );
        assert_eq!(judge(None, Some("null"), None), field("origin"));
        assert_eq!(
            judge(None, Some("http://www.example.com"), None),
            field("origin")
        );
        assert_eq!(
            judge(None, Some("https://www.example.com:8443"), None),
            field("origin")
        );
        for form in [
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
            " application/x-www-form-urlencoded ; charset=utf-8",
        ] {
            assert_eq!(
                judge(Some("same-origin"), Some(OWN), Some(form)),
                Err((415, Some("content-type".to_owned()))),
                "{form}"
            );
        }
    }
}
