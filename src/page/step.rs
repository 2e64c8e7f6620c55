//! The async step of a page request the plan handed to Rust: a `_cio_id`
//! link to look up, a small form post to read, an edge page view to record.
//! Sans I/O: the edge does each lookup, read and write, and hands the result
//! back here; who a link may identify, what a form says, and the order of the
//! cookies are decided in this file. The work done, `finish` is the forward
//! plan, executed by the driver like any other.

use crate::cdp::ids::document_cookies;
use crate::config::Config;
use crate::core::event::{clamp_bytes, MAX_PAGE_NAME_BYTES};
use crate::core::form::{form_identify, parse_form};
use crate::core::identifier::Identifier;
use crate::core::profile::{cookie_identifier, Identify};
use crate::core::secure::IdCookie;
use crate::identity::wire::PersonView;

use super::inputs::{link_param, small_form, Inputs};
use super::origin::{forward, untracked, Forward};
use super::visit::{Anon, PageRequest};

/// How the step starts.
pub enum Start<'a> {
    /// The URL does not split (the runtime never hands one over).
    BadUrl,
    /// No consent (`CONSENT`): forwarded untracked, nothing else is done.
    Untracked(Forward),
    Tracked(PageStep<'a>),
}

/// A page request on its way through the async step.
pub struct PageStep<'a> {
    config: &'a Config,
    method: &'a str,
    url: &'a str,
    cookie: Option<&'a str>,
    page: PageRequest<'a>,
    anon: Anon,
    /// The `_cioanonid` cookie, always the first set.
    anon_cookie: Option<String>,
    /// The identifier the origin is told, as it stands after each step.
    identifier: Option<Identifier>,
    /// Identity cookies in the order the steps set them (link, then form).
    id_cookies: Vec<String>,
}

/// What a form post says, and what the edge does about it.
#[derive(Debug, Clone, PartialEq)]
pub enum FormStep {
    /// No identify (no email field, not a form, or secure mode: a form is
    /// the browser's word and cannot vouch for anyone).
    Nobody,
    /// `ID_COOKIE=cio`: `_cioid` holds the cio_id, so the identify runs first
    /// and its cio_id is handed to [`PageStep::identified`].
    IdentifyFirst(Identify),
    /// The cookies are set already; the identify runs off the response path.
    IdentifyAfter(Identify),
}

impl<'a> PageStep<'a> {
    /// `new_anon_id` is called only when the visitor needs one.
    pub fn start(
        config: &'a Config,
        inputs: &Inputs<'a>,
        new_anon_id: impl FnOnce() -> String,
    ) -> Start<'a> {
        let Some(page) = PageRequest::read(inputs, &config.trust) else {
            return Start::BadUrl;
        };
        if !config.consent.allows(inputs.cookie, inputs.sec_gpc) {
            return Start::Untracked(untracked(config, page.url));
        }
        let anon = page.visit.anon(new_anon_id);
        Start::Tracked(PageStep {
            config,
            method: inputs.method,
            url: inputs.url,
            cookie: inputs.cookie,
            anon_cookie: page.anon_cookie(&config.cookies, &anon),
            identifier: page.visit.cookies.identifier.clone(),
            id_cookies: Vec::new(),
            page,
            anon,
        })
    }

    pub fn anon_id(&self) -> &str {
        &self.anon.id
    }

    pub fn identifier(&self) -> Option<&Identifier> {
        self.identifier.as_ref()
    }

    /// The `_cio_id` to look up (`AUTO_IDENTIFY_LINKS`); in secure mode a
    /// link is no identity and nothing is looked up.
    pub fn link(&self) -> Option<String> {
        (self.config.auto_identify_links && self.config.trust.honours_links())
            .then(|| link_param(&self.page.url))
            .flatten()
    }

    /// The link's lookup: the person it names, if known (a lookup that was
    /// rate limited found no one). A tracked link identifies this browser
    /// unless the browser is already someone else, and merges nothing
    /// (rule 6.12). Answers the cio_id whose history the visitor joins
    /// (`LINK_MERGES_HISTORY`), off the response path.
    pub fn linked(&mut self, cio_id: &str, found: Option<&PersonView>) -> Option<String> {
        let (config, https) = (self.config, self.page.visit.https);
        let (trust, policy) = (&config.trust, &config.cookies);
        match found {
            Some(p) => {
                let written = cookie_identifier(p.id.as_deref(), p.email.as_deref(), &p.cio_id);
                let as_cio = Identifier::CioId(p.cio_id.clone());
                let linked = Identifier::parse(&written)
                    .ok()
                    .map(|l| trust.cookie_identifier(&l, &p.cio_id));
                let someone_else = self.identifier.is_some()
                    && self.identifier != linked
                    && self.identifier.as_ref() != Some(&as_cio);
                if someone_else {
                    return None;
                }
                if let Some(linked) = &linked {
                    self.id_cookies
                        .extend(trust.id_cookies(policy, https, linked));
                }
                self.identifier = linked;
                config.link_merges_history.then(|| p.cio_id.clone())
            }
            // Forwarding on: a Customer.io cio_id the edge has not seen
            // identifies an anonymous browser as that person; nothing is
            // stored until its first event (docs/FORWARDING.md).
            None if config.forwarding.is_some() && self.identifier.is_none() => {
                self.id_cookies
                    .push(policy.id_cookie(https, &format!("cio_{cio_id}")));
                self.identifier = Some(Identifier::CioId(cio_id.to_owned()));
                None
            }
            None => None,
        }
    }

    /// The content type of a small form post to read whole
    /// (`AUTO_IDENTIFY_FORMS`); it is forwarded byte-identical.
    pub fn form<'i>(&self, inputs: &Inputs<'i>) -> Option<&'i str> {
        self.config
            .auto_identify_forms
            .then(|| small_form(inputs))
            .flatten()
    }

    /// A form post read: whom its email identifies.
    pub fn form_read(&mut self, content_type: &str, body: &[u8]) -> FormStep {
        let config = self.config;
        let fields = parse_form(content_type, body).unwrap_or_default();
        let identify = form_identify(&fields, &config.form_email_field, &config.form_attributes)
            .filter(|_| config.trust.secret.is_none());
        match identify {
            None => FormStep::Nobody,
            Some(identify) if config.trust.id_cookie == IdCookie::Cio => {
                FormStep::IdentifyFirst(identify)
            }
            Some(identify) => {
                self.identified(identify.identifier.clone());
                FormStep::IdentifyAfter(identify)
            }
        }
    }

    /// The visitor is `identifier` from now on: its cookies are set.
    pub fn identified(&mut self, identifier: Identifier) {
        let (config, https) = (self.config, self.page.visit.https);
        self.id_cookies
            .extend(config.trust.id_cookies(&config.cookies, https, &identifier));
        self.identifier = Some(identifier);
    }

    /// The `Set-Cookie` values so far: the anonymous id's first.
    pub fn set_cookies(&self) -> Vec<String> {
        self.anon_cookie
            .iter()
            .chain(&self.id_cookies)
            .cloned()
            .collect()
    }

    /// The name of the edge page view to record (`EDGE_PAGE_VIEWS`): the
    /// page's URL.
    pub fn page_view(&self) -> Option<&'a str> {
        (self.config.edge_page_views && self.page.html_navigation)
            .then(|| clamp_bytes(self.url, MAX_PAGE_NAME_BYTES))
    }

    /// The forward plan, the steps done. A navigation also gets the Data
    /// Pipelines SDK's id cookies, last (`CIO_CDP_WRITE_KEY`).
    pub fn finish(self) -> Forward {
        let mut set_cookies = self.set_cookies();
        let written = self.identifier.as_ref().map(Identifier::as_written);
        if self.page.html_navigation {
            set_cookies.extend(document_cookies(
                self.config,
                self.cookie,
                self.page.url.host,
                self.page.visit.https,
                &self.anon.id,
                written.as_deref(),
            ));
        }
        forward(
            self.config,
            self.page.url,
            self.method,
            &self.anon.id,
            written.as_deref(),
            set_cookies,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::origin::ID_HEADER;
    use super::super::test_kit::{config, get, ANON, NEW};
    use super::*;

    fn person(cio_id: &str, id: Option<&str>, email: Option<&str>) -> PersonView {
        PersonView {
            cio_id: cio_id.into(),
            id: id.map(Into::into),
            email: email.map(Into::into),
            created_at: 0,
            attributes: Default::default(),
            relationships: Vec::new(),
            anonymous_ids: Vec::new(),
            updated_at: 0,
        }
    }

    fn tracked<'a>(c: &'a Config, inputs: &Inputs<'a>) -> PageStep<'a> {
        match PageStep::start(c, inputs, || NEW.to_owned()) {
            Start::Tracked(step) => step,
            _ => panic!("not tracked"),
        }
    }

    /// Each cookie as `name=value`, in order.
    fn pairs(cookies: &[String]) -> Vec<String> {
        cookies
            .iter()
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
            .collect()
    }

    const FORWARDING: [(&str, &str); 2] = [("CIO_SITE_ID", "s"), ("CIO_API_KEY", "k")];

    #[test]
    fn what_a_link_identifies() {
        let u1 = person("c1", Some("u1"), None);
        let mailed = person("c2", None, Some("ann@example.com"));
        let anon = format!("_cioanonid={ANON}");
        let new_anon = format!("_cioanonid={NEW}");
        // settings, Cookie header, the lookup's person,
        // then the identifier told to the origin, the cookies, the history join.
        type Case<'a> = (
            Vec<(&'a str, &'a str)>,
            String,
            Option<&'a PersonView>,
            Option<&'a str>,
            Vec<&'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            // A new visitor is the linked person.
            (
                vec![],
                String::new(),
                Some(&u1),
                Some("u1"),
                vec![&new_anon, "_cioid=u1"],
                None,
            ),
            (
                vec![],
                anon.clone(),
                Some(&mailed),
                Some("ann@example.com"),
                vec!["_cioid=ann%40example.com"],
                None,
            ),
            // Already that person, by identifier or by the link's own cio_id.
            (
                vec![],
                format!("{anon}; _cioid=u1"),
                Some(&u1),
                Some("u1"),
                vec!["_cioid=u1"],
                None,
            ),
            (
                vec![],
                format!("{anon}; _cioid=cio_c1"),
                Some(&u1),
                Some("u1"),
                vec!["_cioid=u1"],
                None,
            ),
            // Someone else: the link changes nothing.
            (
                vec![],
                format!("{anon}; _cioid=bob"),
                Some(&u1),
                Some("bob"),
                vec![],
                None,
            ),
            // LINK_MERGES_HISTORY: the visitor's history joins the person.
            (
                vec![("LINK_MERGES_HISTORY", "true")],
                anon.clone(),
                Some(&u1),
                Some("u1"),
                vec!["_cioid=u1"],
                Some("c1"),
            ),
            (
                vec![("LINK_MERGES_HISTORY", "true")],
                format!("{anon}; _cioid=bob"),
                Some(&u1),
                Some("bob"),
                vec![],
                None,
            ),
            // ID_COOKIE=cio: `_cioid` holds the cio_id.
            (
                vec![("ID_COOKIE", "cio")],
                anon.clone(),
                Some(&u1),
                Some("cio_c1"),
                vec!["_cioid=cio_c1"],
                None,
            ),
            // Unknown (or not looked up): nothing, unless forwarding names a
            // Customer.io person to an anonymous browser.
            (vec![], anon.clone(), None, None, vec![], None),
            (
                FORWARDING.to_vec(),
                anon.clone(),
                None,
                Some("cio_abc123"),
                vec!["_cioid=cio_abc123"],
                None,
            ),
            (
                FORWARDING.to_vec(),
                format!("{anon}; _cioid=bob"),
                None,
                Some("bob"),
                vec![],
                None,
            ),
        ];
        for (settings, cookie, found, identifier, cookies, merge) in cases {
            let c = config(&settings).unwrap();
            let inputs = Inputs {
                cookie: Some(&cookie).filter(|c| !c.is_empty()).map(String::as_str),
                ..get("https://x.test/p?_cio_id=abc123")
            };
            let mut step = tracked(&c, &inputs);
            assert_eq!(step.link().as_deref(), Some("abc123"));
            let joined = step.linked("abc123", found);
            let case = format!("{settings:?} {cookie} {found:?}");
            assert_eq!(joined.as_deref(), merge, "{case}");
            assert_eq!(pairs(&step.set_cookies()), cookies, "{case}");
            let f = step.finish();
            let told = f.headers.iter().find(|(n, _)| *n == ID_HEADER);
            assert_eq!(told.and_then(|(_, v)| v.as_deref()), identifier, "{case}");
        }
        // Links switched off, or secure mode: nothing to look up.
        for settings in [
            [("AUTO_IDENTIFY_LINKS", "false")],
            [("IDENTIFY_SECRET", "k")],
        ] {
            let off = config(&settings).unwrap();
            let step = tracked(&off, &get("http://x.test/?_cio_id=abc123"));
            assert_eq!(step.link(), None);
        }
    }

    #[test]
    fn what_a_form_identifies() {
        let body = b"email=Ann%40Example.com&name=Ann";
        let form = "application/x-www-form-urlencoded";
        let post = |url| Inputs {
            method: "POST",
            content_type: Some(form),
            content_length: Some("33"),
            cookie: Some("_cioanonid=0f8fad5b-d9cb-469f-a165-70867728950e"),
            ..get(url)
        };
        let inputs = post("https://x.test/signup");
        // settings, then the step and the cookies it sets at once.
        for (settings, want, cookies) in [
            (vec![], "after", vec!["_cioid=ann%40example.com"]),
            (vec![("ID_COOKIE", "cio")], "first", vec![]),
            // Secure mode: a form cannot vouch for anyone.
            (vec![("IDENTIFY_SECRET", "k")], "nobody", vec![]),
        ] {
            let mut settings = settings;
            settings.push(("AUTO_IDENTIFY_FORMS", "true"));
            let c = config(&settings).unwrap();
            let mut step = tracked(&c, &inputs);
            assert_eq!(step.form(&inputs), Some(form));
            let got = match step.form_read(form, body) {
                FormStep::Nobody => "nobody",
                FormStep::IdentifyFirst(i) => {
                    assert_eq!(i.identifier, Identifier::Email("ann@example.com".into()));
                    "first"
                }
                FormStep::IdentifyAfter(i) => {
                    assert_eq!(i.identifier, Identifier::Email("ann@example.com".into()));
                    "after"
                }
            };
            assert_eq!(got, want, "{settings:?}");
            assert_eq!(pairs(&step.set_cookies()), cookies, "{settings:?}");
        }
        // A form without the email field identifies nobody; forms off: no read.
        let c = config(&[("AUTO_IDENTIFY_FORMS", "true")]).unwrap();
        let mut step = tracked(&c, &inputs);
        assert_eq!(step.form_read(form, b"name=Ann"), FormStep::Nobody);
        let off = config(&[]).unwrap();
        assert_eq!(tracked(&off, &inputs).form(&inputs), None);
    }

    #[test]
    fn the_anonymous_cookie_comes_first() {
        let c = config(&[("AUTO_IDENTIFY_FORMS", "true"), ("EDGE_PAGE_VIEWS", "true")]).unwrap();
        // A new visitor: its anonymous id, then the link's, then the form's.
        let inputs = get("http://x.test/?_cio_id=abc123");
        let mut step = tracked(&c, &inputs);
        step.identified(Identifier::Id("u1".into()));
        assert_eq!(step.anon_id(), NEW);
        step.linked("abc123", Some(&person("c1", Some("u1"), None)));
        step.identified(Identifier::CioId("c2".into()));
        assert_eq!(
            pairs(&step.set_cookies()),
            [
                format!("_cioanonid={NEW}"),
                "_cioid=u1".into(),
                "_cioid=u1".into(),
                "_cioid=cio_c2".into()
            ]
        );
        let f = step.finish();
        assert_eq!(pairs(&f.set_cookies)[0], format!("_cioanonid={NEW}"));
        // A returning visitor's cookie is set again on a navigation only.
        let cookie = format!("_cioanonid={ANON}");
        for (mode, refresh) in [(Some("navigate"), true), (None, false)] {
            let inputs = Inputs {
                cookie: Some(&cookie),
                sec_fetch_mode: mode,
                ..get("http://x.test/")
            };
            let mut step = tracked(&c, &inputs);
            step.identified(Identifier::Id("u1".into()));
            let mut want = vec!["_cioid=u1".to_owned()];
            if refresh {
                want.insert(0, cookie.clone());
            }
            assert_eq!(pairs(&step.set_cookies()), want, "{mode:?}");
            assert_eq!(step.page_view(), refresh.then_some("http://x.test/"));
        }
    }

    #[test]
    fn without_consent_or_a_url_nothing_is_done() {
        let c = config(&[("CONSENT", "gpc")]).unwrap();
        let inputs = Inputs {
            sec_gpc: Some("1"),
            ..get("http://x.test/?_cio_id=abc123")
        };
        let mut issued = false;
        match PageStep::start(&c, &inputs, || {
            issued = true;
            NEW.into()
        }) {
            Start::Untracked(f) => assert!(f.set_cookies.is_empty()),
            _ => panic!("tracked without consent"),
        }
        assert!(!issued);
        assert!(matches!(
            PageStep::start(&c, &get("not a url"), || NEW.into()),
            Start::BadUrl
        ));
    }
}
