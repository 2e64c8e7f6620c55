//! Settings, read once into a typed struct. A bad value is an error that names
//! the setting; the edge answers every request with it rather than guess.

use url::Url;

use crate::core::cookies::{CookiePolicy, SecureMode};
use crate::core::secure::{Consent, IdCookie, Secret, Trust};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The site the edge sits in front of (`ORIGIN_URL`, required).
    pub origin: Url,
    /// How long to wait for the origin's response headers (`ORIGIN_TIMEOUT_MS`).
    pub origin_timeout_ms: u32,
    pub cookies: CookiePolicy,
    /// `USE_ARRAY_PARAMS` (default true): false reshapes arrays (rule 6.8).
    pub use_array_params: bool,
    /// `AUTO_IDENTIFY_LINKS` (default true): honour `_cio_id` on page URLs.
    pub auto_identify_links: bool,
    /// `EDGE_PAGE_VIEWS` (default false): record HTML navigations at the edge.
    pub edge_page_views: bool,
    /// `LINK_MERGES_HISTORY` (default false): a `_cio_id` link merges the
    /// visitor's earlier activity into the linked person (rule 6.12 off).
    pub link_merges_history: bool,
    /// Secret `ADMIN_TOKEN`; without it the admin API answers 404.
    pub admin_token: Option<String>,
    /// Secrets `SITE_ID` and `API_KEY` for the Track API.
    pub site_id: Option<String>,
    pub api_key: Option<String>,
    /// `TRACK_API_HOST`: a host (routed to this worker) that serves the Track
    /// API at `/api/v1` and `/api/v2`, like Customer.io's track host.
    pub track_api_host: Option<String>,
    /// `INJECT_SNIPPET` (default false): insert the snippet into HTML pages.
    pub inject_snippet: bool,
    /// `AUTO_IDENTIFY_FORMS` (default false): form posts with an email identify.
    pub auto_identify_forms: bool,
    /// `FORM_EMAIL_FIELD` (default `email`).
    pub form_email_field: String,
    /// `FORM_ATTRIBUTES` (comma-separated, default none): form fields kept as
    /// attributes.
    pub form_attributes: Vec<String>,
    /// Secret `IDENTIFY_SECRET` and `ID_COOKIE`: which `_cioid` is trusted
    /// and what it holds (secure mode, docs/API.md section 10).
    pub trust: Trust,
    /// `CONSENT` (default `none`).
    pub consent: Consent,
    /// `ANONYMOUS_RETENTION_DAYS` (default 30) in seconds; 0 keeps forever.
    pub anonymous_retention_secs: i64,
    /// `EVENT_RETENTION_DAYS` (default 0: keep) in seconds.
    pub event_retention_secs: i64,
    /// Forwarding to a Customer.io workspace; `None` (off) unless both
    /// `CIO_SITE_ID` and `CIO_API_KEY` are set.
    pub forwarding: Option<CioWorkspace>,
    /// `CIO_CDP_WRITE_KEY`: the Data Pipelines source's write key;
    /// unset, `/_cio/cdp/` answers 404 and no `ajs_*` cookie is set.
    pub cdp_write_key: Option<String>,
    /// `IN_APP` (default false), `IN_APP_SITE_ID`, `IN_APP_SDK` (default
    /// `first-party`): in-app messages (docs/API.md section 12).
    pub in_app: crate::inapp::InApp,
}

/// The Customer.io workspace accepted writes are forwarded to
/// (docs/FORWARDING.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CioWorkspace {
    pub site_id: String,
    pub api_key: String,
    /// `CIO_REGION`: `us` or `eu`.
    pub region: String,
    /// The Track API base (`<base>/api/v2/batch`): the region's, or
    /// `CIO_TRACK_URL`; with the Pipelines destination, the Pipelines base
    /// (`<base>/v1/batch`): the region's, or `CIO_CDP_URL`.
    pub base_url: String,
    /// `CIO_DESTINATION=pipelines`: the Pipelines API key (`CIO_CDP_API_KEY`)
    /// deliveries use instead of the Track API credentials.
    pub pipelines_key: Option<String>,
}

impl CioWorkspace {
    /// Reads only the forwarding settings (the Durable Objects and the queue
    /// consumer need nothing else).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let region = get("CIO_REGION")
            .map(|r| r.to_ascii_lowercase())
            .unwrap_or_else(|| "us".to_owned());
        if !matches!(region.as_str(), "us" | "eu") {
            return Err(ConfigError {
                setting: "CIO_REGION",
                reason: format!("{region:?} is not us or eu"),
            });
        }
        let override_url = match get("CIO_TRACK_URL") {
            None => None,
            Some(raw) => {
                let url = Url::parse(&raw).ok().filter(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                });
                if url.is_none() {
                    return Err(ConfigError {
                        setting: "CIO_TRACK_URL",
                        reason: format!("{raw:?} is not an http(s) URL with a host"),
                    });
                }
                Some(raw)
            }
        };
        match get("CIO_DESTINATION")
            .map(|d| d.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("track") => {}
            Some("pipelines") => return Self::pipelines(&get, region),
            Some(other) => {
                return Err(ConfigError {
                    setting: "CIO_DESTINATION",
                    reason: format!("{other:?} is not track or pipelines"),
                })
            }
        }
        let (Some(site_id), Some(api_key)) = (get("CIO_SITE_ID"), get("CIO_API_KEY")) else {
            return Ok(None);
        };
        Ok(Some(CioWorkspace {
            site_id,
            api_key,
            base_url: crate::cio::track_base(&region, override_url.as_deref()),
            region,
            pipelines_key: None,
        }))
    }

    /// `CIO_DESTINATION=pipelines`: on when `CIO_CDP_API_KEY` is set.
    fn pipelines(
        get: &impl Fn(&str) -> Option<String>,
        region: String,
    ) -> Result<Option<Self>, ConfigError> {
        let override_url = match get("CIO_CDP_URL") {
            None => None,
            Some(raw) => {
                let ok = Url::parse(&raw).ok().is_some_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.query().is_none()
                });
                if !ok {
                    return Err(ConfigError {
                        setting: "CIO_CDP_URL",
                        reason: format!("{raw:?} is not an http(s) URL with a host"),
                    });
                }
                Some(raw)
            }
        };
        let Some(key) = get("CIO_CDP_API_KEY") else {
            return Ok(None);
        };
        Ok(Some(CioWorkspace {
            site_id: String::new(),
            api_key: String::new(),
            base_url: crate::cio::delivery::pipelines_base(&region, override_url.as_deref()),
            region,
            pipelines_key: Some(key),
        }))
    }
}

pub const DEFAULT_ORIGIN_TIMEOUT_MS: u32 = 15_000;

/// Every setting with its default as documented (the README's table, which a
/// test holds to this list, and this list to `from_lookup`): the one place
/// defaults are written down. `None`: unset unless given.
pub const SETTINGS: &[(&str, Option<&str>)] = &[
    ("ORIGIN_URL", None),
    ("ORIGIN_TIMEOUT_MS", Some("15000")),
    ("COOKIE_DOMAIN", None),
    ("COOKIE_SECURE", Some("auto")),
    ("COOKIE_HTTPONLY", Some("false")),
    ("CROSS_SITE_COOKIES", Some("false")),
    ("USE_ARRAY_PARAMS", Some("true")),
    ("AUTO_IDENTIFY_LINKS", Some("true")),
    ("EDGE_PAGE_VIEWS", Some("false")),
    ("INJECT_SNIPPET", Some("false")),
    ("AUTO_IDENTIFY_FORMS", Some("false")),
    ("FORM_EMAIL_FIELD", Some("email")),
    ("FORM_ATTRIBUTES", None),
    ("TRACK_API_HOST", None),
    ("ADMIN_TOKEN", None),
    ("SITE_ID", None),
    ("API_KEY", None),
    ("IDENTIFY_SECRET", None),
    ("ID_COOKIE", Some("identifier")),
    ("CONSENT", Some("none")),
    ("ANONYMOUS_RETENTION_DAYS", Some("30")),
    ("EVENT_RETENTION_DAYS", Some("0")),
    ("CIO_SITE_ID", None),
    ("CIO_API_KEY", None),
    ("CIO_REGION", Some("us")),
    ("CIO_TRACK_URL", None),
    ("LINK_MERGES_HISTORY", Some("false")),
    ("CIO_CDP_WRITE_KEY", None),
    ("CIO_DESTINATION", Some("track")),
    ("CIO_CDP_API_KEY", None),
    ("CIO_CDP_URL", None),
    ("IN_APP", Some("false")),
    ("IN_APP_SITE_ID", None),
    ("IN_APP_SDK", Some("first-party")),
];

/// Longest retention a setting may ask for: 100 years.
const MAX_RETENTION_DAYS: i64 = 36_500;

impl Config {
    /// Builds the config from a lookup of settings by name (the worker's `Env`
    /// in production, a map in tests). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let forwarding = CioWorkspace::from_lookup(&get)?;
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &'static str, default: bool| -> Result<bool, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => parse_bool(&v).ok_or_else(|| ConfigError {
                    setting: name,
                    reason: format!("{v:?} is not true or false"),
                }),
            }
        };

        let origin = match get("ORIGIN_URL") {
            None => {
                return Err(ConfigError {
                    setting: "ORIGIN_URL",
                    reason: "is not set; set it to the URL of the site behind the edge".into(),
                })
            }
            Some(raw) => parse_origin(&raw)?,
        };
        let origin_timeout_ms = match get("ORIGIN_TIMEOUT_MS") {
            None => DEFAULT_ORIGIN_TIMEOUT_MS,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|ms| (100..=600_000).contains(ms))
                .ok_or_else(|| ConfigError {
                    setting: "ORIGIN_TIMEOUT_MS",
                    reason: format!("{v:?} is not a number of milliseconds from 100 to 600000"),
                })?,
        };
        let secure = match get("COOKIE_SECURE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("auto") => SecureMode::Auto,
            Some(v) => match parse_bool(v) {
                Some(true) => SecureMode::Always,
                Some(false) => SecureMode::Never,
                None => {
                    return Err(ConfigError {
                        setting: "COOKIE_SECURE",
                        reason: format!("{v:?} is not auto, true or false"),
                    })
                }
            },
        };
        let domain = match get("COOKIE_DOMAIN") {
            None => None,
            Some(d) => Some(parse_cookie_domain(&d)?),
        };
        let cookies = CookiePolicy {
            domain,
            secure,
            http_only: flag("COOKIE_HTTPONLY", false)?,
            cross_site: flag("CROSS_SITE_COOKIES", false)?,
        };

        let days = |name: &'static str, default: i64| -> Result<i64, ConfigError> {
            match get(name) {
                None => Ok(default * 86_400),
                Some(v) => parse_days(&v).ok_or_else(|| ConfigError {
                    setting: name,
                    reason: format!("{v:?} is not a number of days from 0 to 36500"),
                }),
            }
        };
        let id_cookie = match get("ID_COOKIE").as_deref() {
            None | Some("identifier") => IdCookie::Identifier,
            Some("cio") => IdCookie::Cio,
            Some(v) => {
                return Err(ConfigError {
                    setting: "ID_COOKIE",
                    reason: format!("{v:?} is not identifier or cio"),
                })
            }
        };
        let consent = match get("CONSENT") {
            None => Consent::None,
            Some(v) => Consent::parse(&v).ok_or_else(|| ConfigError {
                setting: "CONSENT",
                reason: format!("{v:?} is not none, gpc or cookie:<name>=<value>"),
            })?,
        };

        let in_app = crate::inapp::InApp {
            on: flag("IN_APP", false)?,
            site_id: get("IN_APP_SITE_ID"),
            sdk: match get("IN_APP_SDK") {
                None => crate::inapp::Sdk::FirstParty,
                Some(v) => crate::inapp::Sdk::parse(&v).ok_or_else(|| ConfigError {
                    setting: "IN_APP_SDK",
                    reason: format!("{v:?} is not first-party or cdn"),
                })?,
            },
        };

        Ok(Config {
            in_app,
            trust: Trust {
                secret: get("IDENTIFY_SECRET").map(|s| Secret::new(&s)),
                id_cookie,
            },
            consent,
            anonymous_retention_secs: days("ANONYMOUS_RETENTION_DAYS", 30)?,
            event_retention_secs: days("EVENT_RETENTION_DAYS", 0)?,
            forwarding,
            cdp_write_key: get("CIO_CDP_WRITE_KEY"),
            origin,
            origin_timeout_ms,
            cookies,
            use_array_params: flag("USE_ARRAY_PARAMS", true)?,
            auto_identify_links: flag("AUTO_IDENTIFY_LINKS", true)?,
            edge_page_views: flag("EDGE_PAGE_VIEWS", false)?,
            link_merges_history: flag("LINK_MERGES_HISTORY", false)?,
            admin_token: get("ADMIN_TOKEN"),
            site_id: get("SITE_ID"),
            api_key: get("API_KEY"),
            inject_snippet: flag("INJECT_SNIPPET", false)?,
            auto_identify_forms: flag("AUTO_IDENTIFY_FORMS", false)?,
            form_email_field: get("FORM_EMAIL_FIELD").unwrap_or_else(|| "email".to_owned()),
            form_attributes: get("FORM_ATTRIBUTES")
                .map(|list| {
                    list.split(',')
                        .map(|f| f.trim().to_owned())
                        .filter(|f| !f.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            track_api_host: match get("TRACK_API_HOST") {
                None => None,
                Some(host) => Some(parse_cookie_domain(&host).map_err(|_| ConfigError {
                    setting: "TRACK_API_HOST",
                    reason: format!("{host:?} is not a host name"),
                })?),
            },
        })
    }
}

/// Days as a decimal number (`30`, `0.5`; up to 9 decimals), in whole
/// seconds. Read by hand: float parsing would add its tables to the wasm.
fn parse_days(v: &str) -> Option<i64> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 5 || frac.len() > 9 || !digits(whole) || !digits(frac) {
        return None;
    }
    if v.ends_with('.') {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let scale = 10i64.pow(frac.len() as u32);
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let secs = whole * 86_400 + (frac * 86_400 + scale / 2) / scale;
    (secs <= MAX_RETENTION_DAYS * 86_400).then_some(secs)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_origin(raw: &str) -> Result<Url, ConfigError> {
    let err = |reason: String| ConfigError {
        setting: "ORIGIN_URL",
        reason,
    };
    let url = Url::parse(raw).map_err(|e| err(format!("{raw:?} is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err(format!("{raw:?} is not an http(s) URL with a host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(format!("{raw:?} must not carry a query or fragment")));
    }
    Ok(url)
}

fn parse_cookie_domain(raw: &str) -> Result<String, ConfigError> {
    let domain = raw.trim_start_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(domain)
    } else {
        Err(ConfigError {
            setting: "COOKIE_DOMAIN",
            reason: format!("{raw:?} is not a domain name"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[("ORIGIN_URL", "http://127.0.0.1:8788")]).unwrap();
        assert_eq!(c.origin.as_str(), "http://127.0.0.1:8788/");
        assert_eq!(c.origin_timeout_ms, DEFAULT_ORIGIN_TIMEOUT_MS);
        assert_eq!(c.cookies, CookiePolicy::default());
        assert!(c.use_array_params && c.auto_identify_links && !c.edge_page_views);
        assert_eq!((c.admin_token, c.site_id, c.api_key), (None, None, None));
        assert!(!c.inject_snippet && !c.auto_identify_forms);
        assert!(!c.link_merges_history, "rule 6.12 is the default");
        assert_eq!(
            (c.form_email_field.as_str(), c.form_attributes.len()),
            ("email", 0)
        );
        assert_eq!(c.trust, Trust::default());
        assert_eq!(c.consent, Consent::None);
        assert_eq!(c.anonymous_retention_secs, 30 * 86_400);
        assert_eq!(c.event_retention_secs, 0);
    }

    #[test]
    fn secure_mode_settings() {
        let c = config(&[
            ("ORIGIN_URL", "http://x.com"),
            ("IDENTIFY_SECRET", "s"),
            ("ID_COOKIE", "cio"),
            ("CONSENT", "cookie:consent=granted"),
            ("ANONYMOUS_RETENTION_DAYS", "0.5"),
            ("EVENT_RETENTION_DAYS", "90"),
        ])
        .unwrap();
        assert_eq!(c.trust.secret, Some(Secret::new("s")));
        assert_eq!(c.trust.id_cookie, IdCookie::Cio);
        assert!(matches!(c.consent, Consent::Cookie { .. }));
        assert_eq!(c.anonymous_retention_secs, 43_200);
        assert_eq!(c.event_retention_secs, 90 * 86_400);
        assert_eq!(parse_days("0.00001"), Some(1));
        assert_eq!(parse_days("36500"), Some(36_500 * 86_400));
        for (name, bad) in [
            ("ID_COOKIE", "email"),
            ("CONSENT", "ask"),
            ("ANONYMOUS_RETENTION_DAYS", "-1"),
            ("EVENT_RETENTION_DAYS", "forever"),
            ("EVENT_RETENTION_DAYS", "NaN"),
            ("EVENT_RETENTION_DAYS", "36501"),
            ("EVENT_RETENTION_DAYS", "1."),
            ("EVENT_RETENTION_DAYS", ".5"),
            ("EVENT_RETENTION_DAYS", "1e3"),
        ] {
            let err = config(&[("ORIGIN_URL", "http://x.com"), (name, bad)]).unwrap_err();
            assert_eq!(err.setting, name, "{name}={bad}");
        }
    }

    #[test]
    fn link_merges_history_is_a_flag() {
        let on = config(&[
            ("ORIGIN_URL", "http://x.com"),
            ("LINK_MERGES_HISTORY", "true"),
        ])
        .unwrap();
        assert!(on.link_merges_history);
        let bad = config(&[
            ("ORIGIN_URL", "http://x.com"),
            ("LINK_MERGES_HISTORY", "maybe"),
        ]);
        assert!(bad.is_err());
    }

    #[test]
    fn in_app_settings() {
        use crate::inapp::{InApp, Sdk};
        let off = config(&[("ORIGIN_URL", "http://x.com")]).unwrap();
        assert_eq!(off.in_app, InApp::default());
        assert!(!off.in_app.on);
        let on = config(&[
            ("ORIGIN_URL", "http://x.com"),
            ("IN_APP", "true"),
            ("IN_APP_SITE_ID", " site-1 "),
            ("IN_APP_SDK", "CDN"),
        ])
        .unwrap();
        assert_eq!(
            on.in_app,
            InApp {
                on: true,
                site_id: Some("site-1".into()),
                sdk: Sdk::Cdn
            }
        );
        for (name, bad) in [("IN_APP", "maybe"), ("IN_APP_SDK", "npm")] {
            let err = config(&[("ORIGIN_URL", "http://x.com"), (name, bad)]).unwrap_err();
            assert_eq!(err.setting, name, "{name}={bad}");
        }
    }

    #[test]
    fn every_setting() {
        let c = config(&[
            ("ORIGIN_URL", "https://www.example.com/base"),
            ("ORIGIN_TIMEOUT_MS", "2500"),
            ("COOKIE_DOMAIN", ".Example.com"),
            ("COOKIE_SECURE", "true"),
            ("COOKIE_HTTPONLY", "yes"),
            ("CROSS_SITE_COOKIES", "1"),
            ("USE_ARRAY_PARAMS", "false"),
            ("AUTO_IDENTIFY_LINKS", "off"),
            ("EDGE_PAGE_VIEWS", "TRUE"),
            ("ADMIN_TOKEN", "t"),
            ("SITE_ID", "s"),
            ("API_KEY", "k"),
            ("TRACK_API_HOST", "Track.Example.com"),
            ("INJECT_SNIPPET", "true"),
            ("AUTO_IDENTIFY_FORMS", "true"),
            ("FORM_EMAIL_FIELD", "work_email"),
            ("FORM_ATTRIBUTES", "first_name, company,,"),
        ])
        .unwrap();
        assert_eq!(c.origin_timeout_ms, 2500);
        assert_eq!(c.cookies.domain.as_deref(), Some("example.com"));
        assert_eq!(c.cookies.secure, SecureMode::Always);
        assert!(c.cookies.http_only && c.cookies.cross_site && c.edge_page_views);
        assert!(!c.use_array_params && !c.auto_identify_links);
        assert_eq!(c.admin_token.as_deref(), Some("t"));
        assert_eq!(c.track_api_host.as_deref(), Some("track.example.com"));
        assert!(c.inject_snippet && c.auto_identify_forms);
        assert_eq!(c.form_email_field, "work_email");
        assert_eq!(
            c.form_attributes,
            vec!["first_name".to_string(), "company".to_string()]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (
                &[
                    ("ORIGIN_URL", "http://x.com"),
                    ("TRACK_API_HOST", "http://x"),
                ],
                "TRACK_API_HOST",
            ),
            (&[], "ORIGIN_URL"),
            (&[("ORIGIN_URL", "not a url")], "ORIGIN_URL"),
            (&[("ORIGIN_URL", "ftp://x.com")], "ORIGIN_URL"),
            (&[("ORIGIN_URL", "http://x.com/?a=1")], "ORIGIN_URL"),
            (
                &[("ORIGIN_URL", "http://x.com"), ("COOKIE_SECURE", "maybe")],
                "COOKIE_SECURE",
            ),
            (
                &[("ORIGIN_URL", "http://x.com"), ("COOKIE_DOMAIN", "a b;c")],
                "COOKIE_DOMAIN",
            ),
            (
                &[
                    ("ORIGIN_URL", "http://x.com"),
                    ("EDGE_PAGE_VIEWS", "sometimes"),
                ],
                "EDGE_PAGE_VIEWS",
            ),
            (
                &[("ORIGIN_URL", "http://x.com"), ("USE_ARRAY_PARAMS", "2")],
                "USE_ARRAY_PARAMS",
            ),
            (
                &[
                    ("ORIGIN_URL", "http://x.com"),
                    ("ORIGIN_TIMEOUT_MS", "soon"),
                ],
                "ORIGIN_TIMEOUT_MS",
            ),
        ];
        for (pairs, setting) in cases {
            let err = config(pairs).unwrap_err();
            assert_eq!(err.setting, setting, "{pairs:?}");
            assert!(err.to_string().contains(setting));
        }
    }

    #[test]
    fn forwarding_is_on_with_both_credentials() {
        let with = |pairs: &[(&str, &str)]| {
            let mut all = vec![("ORIGIN_URL", "http://x.com")];
            all.extend_from_slice(pairs);
            config(&all).map(|c| c.forwarding)
        };
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(with(&[("CIO_SITE_ID", "s")]), Ok(None));
        let on = with(&[("CIO_SITE_ID", "s"), ("CIO_API_KEY", "k")])
            .unwrap()
            .unwrap();
        assert_eq!(
            (on.region.as_str(), on.base_url.as_str()),
            ("us", "https://track.customer.io")
        );
        let eu = with(&[
            ("CIO_SITE_ID", "s"),
            ("CIO_API_KEY", "k"),
            ("CIO_REGION", "EU"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(eu.base_url, "https://track-eu.customer.io");
        let local = with(&[
            ("CIO_SITE_ID", "s"),
            ("CIO_API_KEY", "k"),
            ("CIO_TRACK_URL", "http://127.0.0.1:8787/_cio"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(local.base_url, "http://127.0.0.1:8787/_cio");
        assert_eq!(
            with(&[("CIO_REGION", "mars")]).unwrap_err().setting,
            "CIO_REGION"
        );
        assert_eq!(
            with(&[("CIO_TRACK_URL", "ftp://x")]).unwrap_err().setting,
            "CIO_TRACK_URL"
        );
    }

    #[test]
    fn documented_defaults_are_the_code_s() {
        let base = config(&[("ORIGIN_URL", "http://x.com")]).unwrap();
        for (name, default) in SETTINGS {
            if let (Some(default), false) = (default, *name == "ORIGIN_URL") {
                let explicit = config(&[("ORIGIN_URL", "http://x.com"), (name, default)]).unwrap();
                assert_eq!(explicit, base, "{name}={default} is not the default");
            }
        }
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_default() {
        let readme = include_str!("../README.md");
        for (name, default) in SETTINGS {
            let row = readme
                .lines()
                .find(|l| {
                    l.split('|')
                        .nth(1)
                        .is_some_and(|c| c.contains(&format!("`{name}`")))
                })
                .unwrap_or_else(|| panic!("README has no row for {name}"));
            if let Some(default) = default {
                assert!(
                    row.contains(&format!("| `{default}` |")),
                    "README's default of {name}: {row}"
                );
            }
        }
    }

    #[test]
    fn wrangler_toml_sets_no_default_of_its_own() {
        let toml = include_str!("../wrangler.toml");
        let mut in_vars = false;
        for line in toml.lines().map(str::trim) {
            if line.starts_with('[') {
                in_vars = line == "[vars]";
                continue;
            }
            let Some((name, value)) = line.split_once('=').filter(|_| in_vars) else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim().trim_matches('"'));
            let documented = SETTINGS.iter().find(|(n, _)| *n == name);
            assert!(
                documented.is_some_and(|(_, d)| *d == Some(value)) || name == "ORIGIN_URL",
                "wrangler.toml [vars] {name} = {value:?} differs from the documented default"
            );
        }
    }

    #[test]
    fn empty_values_are_unset() {
        let c = config(&[
            ("ORIGIN_URL", "http://x.com"),
            ("COOKIE_DOMAIN", ""),
            ("ADMIN_TOKEN", " "),
        ])
        .unwrap();
        assert_eq!((c.cookies.domain, c.admin_token), (None, None));
    }
}
