//! The runtime's side of the Durable Object classes: the class the runtime
//! constructs, and its `fetch` and `alarm`. Exported by [`export_object!`]
//! rather than the `worker` crate's `#[durable_object]`: that one turns every
//! incoming call into a `worker::Request` (which reads the runtime's `cf`
//! object, the URL and the headers) and its answer into a response with
//! headers, and compiles the promise glue once per method of each class.
//! Here a call is its path and its body text, an answer is the reply's text,
//! and the glue is compiled once for all of them.

use std::future::Future;
use std::pin::Pin;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use worker::{Env, State};

/// One call into an object: the path it was sent to and its body.
pub struct Incoming {
    pub path: String,
    pub body: String,
}

impl Incoming {
    async fn read(req: web_sys::Request) -> Result<Self, JsValue> {
        let url = req.url();
        // The runtime's own serialization: the path starts at the first `/`
        // after the scheme's `//`, and our callers send no query.
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let path = url[after_scheme..]
            .find('/')
            .map_or("/", |i| &url[after_scheme + i..])
            .to_owned();
        let body = JsFuture::from(req.text()?)
            .await?
            .as_string()
            .unwrap_or_default();
        Ok(Incoming { path, body })
    }
}

/// A Durable Object class of ours: what the runtime constructs and calls.
#[allow(async_fn_in_trait)] // single-threaded wasm: no `Send` bound to name
pub trait Object: Sized + 'static {
    fn new(state: State, env: Env) -> Self;
    /// Answers a call: the reply's text (a JSON `Result`, `rpc::reply`).
    async fn fetch(&self, call: Incoming) -> worker::Result<String>;
    /// The alarm; only classes exported with `alarm` are ever woken.
    async fn alarm(&self) -> worker::Result<()> {
        Ok(())
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

/// Every method's promise, through one instantiation of the glue.
fn promise(answer: Answer) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(answer)
}

pub fn fetch<O: Object>(object: std::rc::Rc<O>, req: web_sys::Request) -> js_sys::Promise {
    promise(Box::pin(async move {
        let call = Incoming::read(req).await?;
        let text = object.fetch(call).await?;
        Ok(web_sys::Response::new_with_opt_str(Some(&text))?.into())
    }))
}

pub fn alarm<O: Object>(object: std::rc::Rc<O>) -> js_sys::Promise {
    promise(Box::pin(async move {
        object.alarm().await?;
        Ok(JsValue::UNDEFINED)
    }))
}

/// Exports `$object` (an [`Object`]) to the runtime as the class `$js`, with
/// `fetch`, and `alarm` when asked for.
#[macro_export]
macro_rules! export_object {
    ($export:ident as $js:ident, $object:ty $(, $alarm:ident)?) => {
        #[wasm_bindgen::prelude::wasm_bindgen(js_name = $js)]
        pub struct $export(std::rc::Rc<$object>);

        #[wasm_bindgen::prelude::wasm_bindgen(js_class = $js)]
        impl $export {
            #[wasm_bindgen(constructor)]
            pub fn new(state: worker::worker_sys::DurableObjectState, env: worker::Env) -> Self {
                let state = worker::durable::State::from(state);
                Self(std::rc::Rc::new(<$object as $crate::cloudflare::class::Object>::new(state, env)))
            }

            pub fn fetch(&self, req: web_sys::Request) -> js_sys::Promise {
                $crate::cloudflare::class::fetch(self.0.clone(), req)
            }

            $(
                pub fn $alarm(&self) -> js_sys::Promise {
                    $crate::cloudflare::class::alarm(self.0.clone())
                }
            )?
        }
    };
}
