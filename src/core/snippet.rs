//! Snippet injection (`INJECT_SNIPPET`): Customer.io's classic snippet, with
//! its script pointed at `/_cio/track.js`, inserted at the end of `<head>` of
//! an HTML page while it streams through. A page whose head already carries a
//! snippet (ours or Customer.io's) or loads a `track.js` is left alone: two
//! snippets would fight over the `_cio` global. The rewriting itself is
//! workerd's `HTMLRewriter`, driven from JS; the rules it applies are these.

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

/// The path of the Data Pipelines SDK's bundle (Customer.io's CDN or the
/// edge's `/_cio/cdp/`): a page that loads it tracks itself.
const PIPELINES_BUNDLE: &str = "/v1/analytics-js/snippet/";

/// The snippet with in-app messages on (`IN_APP=true`): the same, with
/// `data-use-in-app` on its script tag.
pub const SNIPPET_IN_APP: &str = concat!(
    "<script>var _cio=_cio||[];(function(){var a,b,c;a=function(f){return function(){",
    "_cio.push([f].concat(Array.prototype.slice.call(arguments,0)))}};",
    "b=[\"load\",\"identify\",\"sidentify\",\"track\",\"page\",\"on\",\"off\"];",
    "for(c=0;c<b.length;c++){_cio[b[c]]=a(b[c])};",
    "var t=document.createElement('script'),s=document.getElementsByTagName('script')[0];",
    "t.async=true;t.id='cio-tracker';t.setAttribute('data-use-in-app','true');t.src='/_cio/track.js';",
    "(s?s.parentNode.insertBefore(t,s):document.head.appendChild(t))})();</script>"
);

/// A script source that is some `track.js` of ours or Customer.io's, or the
/// Data Pipelines SDK.
pub fn is_sdk_src(src: &str) -> bool {
    (src.contains("track.js") && (src.contains("/_cio/") || src.contains("customer.io")))
        || src.contains(PIPELINES_BUNDLE)
}

/// Inline script text of a snippet: it names `_cio` and loads a `track.js`,
/// or it is the Data Pipelines snippet.
pub fn is_snippet_text(script: &str) -> bool {
    (script.contains("_cio") && script.contains("track.js")) || script.contains(PIPELINES_BUNDLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_one_line_pointing_at_our_sdk() {
        assert!(!SNIPPET.contains('\n'));
        assert_eq!(SNIPPET.matches("/_cio/track.js").count(), 1);
        assert!(is_snippet_text(SNIPPET));
        assert!(!SNIPPET_IN_APP.contains('\n'));
        assert!(is_snippet_text(SNIPPET_IN_APP));
        assert_eq!(
            SNIPPET_IN_APP.replace("t.setAttribute('data-use-in-app','true');", ""),
            SNIPPET
        );
    }

    #[test]
    fn recognises_sdk_sources() {
        for (src, sdk) in [
            ("/_cio/track.js", true),
            ("https://assets.customer.io/assets/track.js", true),
            ("https://cdn.example.com/track.js", false),
            ("/_cio/other.js", false),
            (
                "/_cio/cdp/v1/analytics-js/snippet/wk/analytics.min.js",
                true,
            ),
            (
                "https://cdp.customer.io/v1/analytics-js/snippet/wk/analytics.min.js",
                true,
            ),
            ("", false),
        ] {
            assert_eq!(is_sdk_src(src), sdk, "{src}");
        }
    }

    #[test]
    fn recognises_snippet_text() {
        let theirs = "var _cio = _cio || [];(function(){var t=document.createElement('script');\
                      t.src='https://assets.customer.io/assets/track.js';})();";
        assert!(is_snippet_text(theirs));
        assert!(!is_snippet_text("var x = 1;"));
        assert!(!is_snippet_text("var _cio = [];"));
        let pipelines = "!function(){var i=\"cioanalytics\";analytics.load=function(key,e){\
                         t.src=\"/_cio/cdp/v1/analytics-js/snippet/\"+key+\"/analytics.min.js\"}}();";
        assert!(is_snippet_text(pipelines));
    }
}
