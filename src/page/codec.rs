//! The text the JS driver and the wasm pass each other on the page path: the
//! request's inputs one way, the plan the other. This module and
//! `js/plan.mjs` are the only code that knows the layout; the golden file
//! `tests/fixtures/plan-codec.json` is read by the tests of both, so the two
//! sides cannot drift apart.
//!
//! Inputs: the fields of [`Inputs`] in order, one per line (none can hold a
//! line break); an empty line is an absent header. A GET or HEAD carries no
//! body: its `Content-Type` and `Content-Length` lines are empty, and read as
//! absent (the driver does not read them).
//!
//! A plan, one item per line (header values and URLs never hold a line break):
//!
//! ```text
//! forward
//! <origin URL>
//! <timeout ms>
//! <snippet HTML, or an empty line: no injection>
//! h<name>:<value>    set a header toward the origin
//! d<name>            drop a header toward the origin
//! c<value>           append a Set-Cookie to the response
//! r<name>            a response header of the origin's to strip; when one is
//!                    present, the driver hands the values, in order, back to
//!                    the async handler for the cookies to set
//! ```
//!
//! or, for the async handler, the single line `rust <reason>`. A line of any
//! other kind is an error on both sides, never a cookie.

use super::plan::{Forward, Inputs, Plan, Reason};

/// The first line of a forward plan.
const FORWARD: &str = "forward";
/// The prefix of the one line of a plan for the async handler.
const RUST: &str = "rust ";

/// The kinds of the lines after a forward plan's first four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    SetHeader,
    DropHeader,
    SetCookie,
    Watch,
}

impl LineKind {
    pub const ALL: [LineKind; 4] = [
        LineKind::SetHeader,
        LineKind::DropHeader,
        LineKind::SetCookie,
        LineKind::Watch,
    ];

    pub fn tag(self) -> char {
        match self {
            LineKind::SetHeader => 'h',
            LineKind::DropHeader => 'd',
            LineKind::SetCookie => 'c',
            LineKind::Watch => 'r',
        }
    }

    fn of(tag: char) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

/// Why a text is not a plan. Only a plan of our own is ever decoded, so this
/// means the two sides disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("plan text is empty or of an unknown type")]
    UnknownPlan,
    #[error("plan hands to Rust for an unknown reason {0:?}")]
    UnknownReason(String),
    #[error("forward plan misses its {0} line")]
    Missing(&'static str),
    #[error("forward plan has a timeout that is not a number: {0:?}")]
    BadTimeout(String),
    #[error("forward plan line {0} is of an unknown kind")]
    UnknownLine(usize),
    #[error("forward plan line {0} sets a header without a colon")]
    BadHeader(usize),
}

/// Reads the inputs from the driver's one string.
pub fn decode_inputs(text: &str) -> Inputs<'_> {
    let mut fields = text.split('\n');
    let mut next = || fields.next().filter(|f| !f.is_empty());
    let method = next().unwrap_or("GET");
    let url = next().unwrap_or("");
    let (cookie, accept, sec_fetch_mode) = (next(), next(), next());
    let body = has_body(method);
    let content_type = next().filter(|_| body);
    let content_length = next().filter(|_| body);
    Inputs {
        method,
        url,
        cookie,
        accept,
        sec_fetch_mode,
        content_type,
        content_length,
        sec_gpc: next(),
    }
}

/// Whether a request of this method can carry a body (its body headers are
/// part of the inputs).
fn has_body(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD")
}

/// The inputs as the driver writes them (the tests' side of the layout).
pub fn encode_inputs(inputs: &Inputs) -> String {
    let body = has_body(inputs.method);
    [
        Some(inputs.method),
        Some(inputs.url),
        inputs.cookie,
        inputs.accept,
        inputs.sec_fetch_mode,
        inputs.content_type.filter(|_| body),
        inputs.content_length.filter(|_| body),
        inputs.sec_gpc,
    ]
    .map(Option::unwrap_or_default)
    .join("\n")
}

/// The plan as the driver reads it.
pub fn encode(plan: &Plan) -> String {
    match plan {
        Plan::Rust(reason) => format!("{RUST}{}", reason.as_str()),
        Plan::Forward(f) => encode_forward(f),
    }
}

fn encode_forward(f: &Forward) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(FORWARD);
    out.push('\n');
    out.push_str(&f.target);
    out.push('\n');
    out.push_str(&f.timeout_ms.to_string());
    out.push('\n');
    out.push_str(f.snippet.unwrap_or(""));
    // One line: its kind's tag, then its parts (no allocation per line).
    let mut line = |kind: LineKind, parts: &[&str]| {
        out.push('\n');
        out.push(kind.tag());
        parts.iter().for_each(|p| out.push_str(p));
    };
    for (name, value) in &f.headers {
        match value {
            Some(value) => line(LineKind::SetHeader, &[name, ":", value]),
            None => line(LineKind::DropHeader, &[name]),
        }
    }
    for cookie in &f.set_cookies {
        line(LineKind::SetCookie, &[cookie]);
    }
    for name in f.watch {
        line(LineKind::Watch, &[name]);
    }
    out
}

/// A plan read back from its text, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanText<'a> {
    Forward(ForwardText<'a>),
    Rust(Reason),
}

/// A forward plan read back from its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardText<'a> {
    pub target: &'a str,
    pub timeout_ms: u32,
    pub snippet: Option<&'a str>,
    /// Headers toward the origin, in order: `Some` sets, `None` drops.
    pub headers: Vec<(&'a str, Option<&'a str>)>,
    pub set_cookies: Vec<&'a str>,
    pub watch: Vec<&'a str>,
}

impl<'a> ForwardText<'a> {
    /// The value a header toward the origin is set to, if it is set.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }
}

/// Reads a plan text; anything the encoder would not write is an error.
pub fn decode(text: &str) -> Result<PlanText<'_>, CodecError> {
    if let Some(reason) = text.strip_prefix(RUST) {
        return Reason::parse(reason)
            .map(PlanText::Rust)
            .ok_or_else(|| CodecError::UnknownReason(reason.to_owned()));
    }
    let mut lines = text.split('\n');
    if lines.next() != Some(FORWARD) {
        return Err(CodecError::UnknownPlan);
    }
    let target = lines.next().ok_or(CodecError::Missing("origin URL"))?;
    let timeout = lines.next().ok_or(CodecError::Missing("timeout"))?;
    let timeout_ms = Some(timeout)
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| CodecError::BadTimeout(timeout.to_owned()))?;
    let snippet = lines.next().ok_or(CodecError::Missing("snippet"))?;
    let mut plan = ForwardText {
        target,
        timeout_ms,
        snippet: (!snippet.is_empty()).then_some(snippet),
        ..Default::default()
    };
    for (i, line) in lines.enumerate() {
        let number = i + 5;
        let mut chars = line.chars();
        let kind = chars.next().and_then(LineKind::of);
        let rest = chars.as_str();
        match kind.ok_or(CodecError::UnknownLine(number))? {
            LineKind::SetHeader => {
                let (name, value) = rest.split_once(':').ok_or(CodecError::BadHeader(number))?;
                plan.headers.push((name, Some(value)));
            }
            LineKind::DropHeader => plan.headers.push((rest, None)),
            LineKind::SetCookie => plan.set_cookies.push(rest),
            LineKind::Watch => plan.watch.push(rest),
        }
    }
    Ok(PlanText::Forward(plan))
}

/// The forward plan of a text of ours; `None` for any other text.
pub fn decode_forward(text: &str) -> Option<ForwardText<'_>> {
    match decode(text) {
        Ok(PlanText::Forward(f)) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The golden file the JS side's test reads too.
    const GOLDEN: &str = include_str!("../../tests/fixtures/plan-codec.json");

    fn golden() -> Value {
        serde_json::from_str(GOLDEN).unwrap()
    }

    fn opt(v: &Value) -> Option<&str> {
        v.as_str()
    }

    fn strs(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn golden_inputs() {
        for case in golden()["inputs"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let f = &case["fields"];
            let want = Inputs {
                method: f["method"].as_str().unwrap(),
                url: f["url"].as_str().unwrap(),
                cookie: opt(&f["cookie"]),
                accept: opt(&f["accept"]),
                sec_fetch_mode: opt(&f["secFetchMode"]),
                content_type: opt(&f["contentType"]),
                content_length: opt(&f["contentLength"]),
                sec_gpc: opt(&f["secGpc"]),
            };
            // A GET or HEAD's body headers are neither written nor read.
            let body = has_body(want.method);
            let read = Inputs {
                content_type: want.content_type.filter(|_| body),
                content_length: want.content_length.filter(|_| body),
                ..want.clone()
            };
            assert_eq!(decode_inputs(text), read, "{text:?}");
            assert_eq!(encode_inputs(&want), text);
        }
        assert_eq!(
            decode_inputs(""),
            Inputs {
                method: "GET",
                ..Default::default()
            }
        );
    }

    #[test]
    fn golden_plans() {
        for case in golden()["plans"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let p = &case["plan"];
            let want = match p["kind"].as_str().unwrap() {
                "rust" => PlanText::Rust(Reason::parse(p["reason"].as_str().unwrap()).unwrap()),
                "forward" => PlanText::Forward(ForwardText {
                    target: p["target"].as_str().unwrap(),
                    timeout_ms: p["timeoutMs"].as_u64().unwrap() as u32,
                    snippet: opt(&p["snippet"]),
                    headers: p["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| (h[0].as_str().unwrap(), opt(&h[1])))
                        .collect(),
                    set_cookies: strs(&p["setCookies"]),
                    watch: strs(&p["watch"]),
                }),
                other => panic!("kind {other}"),
            };
            assert_eq!(decode(text), Ok(want.clone()), "{text:?}");
            // Encoding the same plan writes the same text.
            let plan = match want {
                PlanText::Rust(reason) => Plan::Rust(reason),
                PlanText::Forward(f) => {
                    let leak =
                        |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
                    Plan::Forward(Forward {
                        target: f.target.to_owned(),
                        timeout_ms: f.timeout_ms,
                        headers: f
                            .headers
                            .iter()
                            .map(|(n, v)| (leak(n), v.map(str::to_owned)))
                            .collect(),
                        set_cookies: f.set_cookies.iter().map(|c| c.to_string()).collect(),
                        snippet: f.snippet.map(leak),
                        watch: Box::leak(
                            f.watch
                                .iter()
                                .map(|w| leak(w))
                                .collect::<Vec<_>>()
                                .into_boxed_slice(),
                        ),
                    })
                }
            };
            assert_eq!(encode(&plan), text);
        }
    }

    #[test]
    fn golden_errors() {
        for case in golden()["errors"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert!(decode(text).is_err(), "{text:?} decoded");
        }
        // Above all: an unknown line is never taken for a cookie.
        assert_eq!(
            decode("forward\nhttp://o.test/\n10\n\nxa=1"),
            Err(CodecError::UnknownLine(5))
        );
    }

    #[test]
    fn every_reason_round_trips() {
        for reason in Reason::ALL {
            assert_eq!(
                decode(&encode(&Plan::Rust(reason))),
                Ok(PlanText::Rust(reason))
            );
        }
    }
}
