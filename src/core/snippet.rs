//! Snippet injection (`INJECT_SNIPPET`): Customer.io's classic snippet, with
//! its script pointed at `/_cio/track.js`, inserted at the end of `<head>` of
//! an HTML page while it streams through. A page whose head already carries a
//! snippet (ours or Customer.io's) or loads a `track.js` is left alone: two
//! snippets would fight over the `_cio` global.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use lol_html::html_content::ContentType;
use lol_html::{element, end_tag, text, HtmlRewriter, Settings};

/// The classic snippet, unchanged but for the script's `src`.
pub const SNIPPET: &str = concat!(
    "<script>var _cio=_cio||[];(function(){var a,b,c;a=function(f){return function(){",
    "_cio.push([f].concat(Array.prototype.slice.call(arguments,0)))}};",
    "b=[\"load\",\"identify\",\"sidentify\",\"track\",\"page\",\"on\",\"off\"];",
    "for(c=0;c<b.length;c++){_cio[b[c]]=a(b[c])};",
    "var t=document.createElement('script'),s=document.getElementsByTagName('script')[0];",
    "t.async=true;t.id='cio-tracker';t.src='/_cio/track.js';",
    "(s?s.parentNode.insertBefore(t,s):document.head.appendChild(t))})();</script>"
);

/// A script source that is some `track.js` of ours or Customer.io's.
fn is_sdk_src(src: &str) -> bool {
    src.contains("track.js") && (src.contains("/_cio/") || src.contains("customer.io"))
}

/// Inline script text of a snippet: it names `_cio` and loads a `track.js`.
fn is_snippet_text(script: &str) -> bool {
    script.contains("_cio") && script.contains("track.js")
}

/// Where the rewriter writes: into the shared output buffer.
type Sink = Box<dyn FnMut(&[u8])>;

/// A streaming rewriter: feed chunks, take what is ready.
pub struct SnippetInjector {
    rewriter: HtmlRewriter<'static, Sink>,
    output: Rc<RefCell<Vec<u8>>>,
}

impl Default for SnippetInjector {
    fn default() -> Self {
        Self::new()
    }
}

impl SnippetInjector {
    pub fn new() -> Self {
        let output = Rc::new(RefCell::new(Vec::new()));
        let sink_output = Rc::clone(&output);
        let has_sdk = Rc::new(Cell::new(false));
        let seen = Rc::clone(&has_sdk);
        let seen_inline = Rc::clone(&has_sdk);
        let injected = Rc::new(Cell::new(false));
        // Inline script text arrives in pieces; it is judged whole.
        let mut script_text = String::new();
        let settings = Settings {
            element_content_handlers: vec![
                element!("head script[src]", move |el| {
                    if el.get_attribute("src").is_some_and(|src| is_sdk_src(&src)) {
                        seen.set(true);
                    }
                    Ok(())
                }),
                text!("head script", move |chunk| {
                    if script_text.len() < 64 * 1024 {
                        script_text.push_str(chunk.as_str());
                    }
                    if chunk.last_in_text_node() {
                        if is_snippet_text(&script_text) {
                            seen_inline.set(true);
                        }
                        script_text.clear();
                    }
                    Ok(())
                }),
                element!("head", move |el| {
                    let has_sdk = Rc::clone(&has_sdk);
                    let injected = Rc::clone(&injected);
                    el.on_end_tag(end_tag!(move |end| {
                        if !has_sdk.get() && !injected.replace(true) {
                            end.before(SNIPPET, ContentType::Html);
                        }
                        Ok(())
                    }))?;
                    Ok(())
                }),
            ],
            ..Settings::new()
        };
        let sink: Sink =
            Box::new(move |chunk: &[u8]| sink_output.borrow_mut().extend_from_slice(chunk));
        SnippetInjector {
            rewriter: HtmlRewriter::new(settings, sink),
            output,
        }
    }

    /// Feeds a chunk; answers the bytes ready to send. On a rewriter error the
    /// chunk passes through as it came (the page matters more than the snippet).
    pub fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.rewriter.write(chunk).is_err() {
            self.output.borrow_mut().extend_from_slice(chunk);
        }
        self.output.take()
    }

    /// Ends the document; answers the rest.
    pub fn end(self) -> Vec<u8> {
        let output = Rc::clone(&self.output);
        let _ = self.rewriter.end();
        output.take()
    }
}

/// Runs a whole document through the injector in the given chunks.
pub fn inject_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut injector = SnippetInjector::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(injector.write(chunk));
    }
    out.extend(injector.end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str =
        "<!doctype html><html><head><title>t</title></head><body><p>hi</p></body></html>";

    fn inject(page: &str, split_at: &[usize]) -> String {
        let bytes = page.as_bytes();
        let mut chunks = Vec::new();
        let mut start = 0;
        for &at in split_at {
            chunks.push(&bytes[start..at]);
            start = at;
        }
        chunks.push(&bytes[start..]);
        String::from_utf8(inject_chunks(chunks)).unwrap()
    }

    #[test]
    fn inserts_once_before_head_end() {
        let out = inject(PAGE, &[]);
        assert_eq!(out, PAGE.replace("</head>", &format!("{SNIPPET}</head>")));
        assert_eq!(out.matches("/_cio/track.js").count(), 1);
    }

    #[test]
    fn head_split_across_every_chunk_boundary() {
        let want = PAGE.replace("</head>", &format!("{SNIPPET}</head>"));
        for at in 1..PAGE.len() {
            assert_eq!(inject(PAGE, &[at]), want, "split at {at}");
        }
        // Byte by byte.
        let every: Vec<usize> = (1..PAGE.len()).collect();
        assert_eq!(inject(PAGE, &every), want);
    }

    #[test]
    fn leaves_pages_that_load_the_sdk() {
        let page =
            "<html><head><script async src=\"/_cio/track.js\"></script></head><body></body></html>";
        assert_eq!(inject(page, &[20]), page);
    }

    #[test]
    fn leaves_pages_that_carry_a_snippet() {
        let ours = format!("<html><head>{SNIPPET}</head><body></body></html>");
        let theirs = "<html><head><script>var _cio = _cio || [];(function(){var t=document.createElement('script');\
                      t.src='https://assets.customer.io/assets/track.js';})();</script></head><body></body></html>";
        for page in [ours.as_str(), theirs] {
            for at in [0, 30, 60, 90, 120] {
                let split: &[usize] = if at == 0 { &[] } else { &[at] };
                assert_eq!(inject(page, split), page, "split at {at}");
            }
        }
        let unrelated = "<html><head><script>var x = 1;</script></head><body></body></html>";
        assert!(inject(unrelated, &[]).contains(SNIPPET));
    }

    #[test]
    fn no_head_no_change() {
        let page = "<p>fragment</p>";
        assert_eq!(inject(page, &[]), page);
    }
}
