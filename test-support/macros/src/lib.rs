//! `#[device_test]`: one test per compiled backend.
//!
//! ```ignore
//! #[device_test]
//! fn adds() { let d = device(); /* ... */ }
//! ```
//! keeps `fn adds` as a plain function and adds `#[test] fn adds_wgpu()` (and, where the crate is
//! built with its `cuda` feature, `#[test] fn adds_cuda()`), each of which runs `adds` with
//! `dynlab_test_support::device()` bound to that backend's device. Written without `syn` so the
//! test tooling adds no build time.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Backends a test runs on, with the `cfg` that compiles each in.
const BACKENDS: &[(&str, Option<&str>)] = &[("wgpu", None), ("cuda", Some("cuda"))];

/// Runs the function once per compiled backend (see the crate docs).
#[proc_macro_attribute]
pub fn device_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[device_test] takes no arguments");
    }
    let Some(name) = function_name(&item) else {
        return compile_error("#[device_test] goes on a function: `fn name() { ... }`");
    };
    let mut out = item;
    for (backend, feature) in BACKENDS {
        let test = format!(
            "{cfg} #[test] fn {name}_{backend}() {{ ::dynlab_test_support::run_on(\"{backend}\", {name}) }}",
            cfg = feature.map_or(String::new(), |f| format!("#[cfg(feature = \"{f}\")]")),
        );
        out.extend(test.parse::<TokenStream>().expect("generated test parses"));
    }
    out
}

/// The identifier after `fn` (attributes, visibility and doc comments may come first).
fn function_name(item: &TokenStream) -> Option<String> {
    let mut tokens = item.clone().into_iter();
    while let Some(token) = tokens.next() {
        if matches!(&token, TokenTree::Ident(i) if i.to_string() == "fn") {
            return match tokens.next() {
                Some(TokenTree::Ident(name)) => Some(name.to_string()),
                _ => None,
            };
        }
    }
    None
}

fn compile_error(message: &str) -> TokenStream {
    let span = Span::call_site();
    let mut args = TokenStream::new();
    args.extend([TokenTree::Literal(proc_macro::Literal::string(message))]);
    TokenStream::from_iter([
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
        TokenTree::Group(Group::new(Delimiter::Parenthesis, args)),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ])
}
