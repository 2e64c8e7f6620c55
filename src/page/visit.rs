//! What is known of the visitor behind one request (its validated identity
//! cookies, how it arrived), and the one place that settles its anonymous id:
//! the one it has, or a new one with the cookie that sets it.

use crate::core::cookies::{read_cookies, CookiePolicy, IncomingCookies};
use crate::core::secure::Trust;

use super::inputs::{is_html_navigation, Inputs, UrlParts};

/// The visitor of a request, as its cookies say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visit {
    pub cookies: IncomingCookies,
    pub https: bool,
}

/// The visitor's anonymous id, and whether it was issued just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anon {
    pub id: String,
    pub is_new: bool,
}

impl Visit {
    /// The cookies of a request (its `Cookie` header); a `_cioid` secure
    /// mode cannot vouch for is dropped here (`Trust::vouch`).
    pub fn read(cookie: Option<&str>, https: bool, trust: &Trust) -> Self {
        Visit {
            cookies: trust.vouch(read_cookies(cookie), cookie),
            https,
        }
    }

    /// The anonymous id issuer: the visitor's own, or a new one from
    /// `new_anon_id` (called only then).
    pub fn anon(&self, new_anon_id: impl FnOnce() -> String) -> Anon {
        match &self.cookies.anon_id {
            Some(id) => Anon {
                id: id.clone(),
                is_new: false,
            },
            None => Anon {
                id: new_anon_id(),
                is_new: true,
            },
        }
    }

    /// The anonymous id for an endpoint: a new one adds the cookie that sets
    /// it to `cookies`.
    pub fn anon_id(
        &self,
        policy: &CookiePolicy,
        cookies: &mut Vec<String>,
        new_anon_id: impl FnOnce() -> String,
    ) -> String {
        let anon = self.anon(new_anon_id);
        if anon.is_new {
            cookies.push(policy.anon_cookie(self.https, &anon.id));
        }
        anon.id
    }
}

/// A request for a page of the site: its URL, its visitor, whether it is a
/// navigation.
pub struct PageRequest<'a> {
    pub url: UrlParts<'a>,
    pub visit: Visit,
    pub html_navigation: bool,
}

impl<'a> PageRequest<'a> {
    /// `None` when the URL does not split (the runtime never hands one over).
    pub fn read(inputs: &Inputs<'a>, trust: &Trust) -> Option<Self> {
        let url = UrlParts::split(inputs.url)?;
        Some(PageRequest {
            visit: Visit::read(inputs.cookie, url.scheme == "https", trust),
            html_navigation: is_html_navigation(inputs),
            url,
        })
    }

    /// The `_cioanonid` cookie a page answer sets: for a new id, and again
    /// on each navigation so the cookie's lifetime runs from the last visit.
    pub fn anon_cookie(&self, policy: &CookiePolicy, anon: &Anon) -> Option<String> {
        (anon.is_new || self.html_navigation)
            .then(|| policy.anon_cookie(self.visit.https, &anon.id))
    }
}
