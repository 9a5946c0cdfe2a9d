//! The web console: `web/`'s static files, embedded in the binary. `GET /`
//! from a browser (Accept: text/html, no WebSocket upgrade) gets the page;
//! `GET /assets/<file>` its modules and stylesheet. The page runs under a
//! strict Content-Security-Policy: no inline script or style, connections
//! only to this origin and WebSockets.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{Request, StatusCode};

use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::http::response::{HttpResponse, HttpResult, bytes};

/// The page's policy: everything from this origin, nothing inline, no
/// framing. `connect-src` names ws: and wss: for browsers whose `'self'`
/// does not cover WebSockets to the same host.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     connect-src 'self' ws: wss:; img-src 'self' data:; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// An embedded file: its name under `/assets/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: &[u8] = include_bytes!("../../../web/index.html");

const JS: &str = "text/javascript; charset=utf-8";

/// `asset!(name, content type)`: `web/<name>`, embedded.
macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../../web/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("sales.js", JS),
    asset!("buyer.js", JS),
    asset!("admin.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// True when the request asks for a page: its Accept names text/html.
/// Checked after the WebSocket upgrade, so a browser's upgrade on `/`
/// still becomes a socket.
pub fn wants_html<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or("").trim() == "text/html")
}

/// GET / for a browser: the console page.
pub fn page(req: &Request<Bytes>) -> HttpResponse {
    let mut res = serve(req, "text/html; charset=utf-8", INDEX);
    let h = res.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// GET /assets/<file>.
pub fn asset(req: &Request<Bytes>, name: &str) -> HttpResult {
    let a = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, format!("no asset named {name}")))?;
    Ok(serve(req, a.content_type, a.body))
}

/// A file with the headers every console response carries. The files
/// change only with the binary, so a strong ETag of their bytes lets a
/// browser revalidate (`no-cache`) and get a 304 without the body.
fn serve(req: &Request<Bytes>, content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    let tag = etag(body);
    let fresh = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let ct = HeaderValue::from_static(content_type);
    let mut res = if fresh {
        bytes(StatusCode::NOT_MODIFIED, ct, Bytes::new())
    } else {
        bytes(StatusCode::OK, ct, Bytes::from_static(body))
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// `"<64-bit FNV-1a of the bytes>"`: stable for a build, cheap, computed per
/// request over a few kilobytes.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(headers: &[(&str, &str)]) -> Request<Bytes> {
        let mut b = Request::get("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).unwrap()
    }

    #[test]
    fn browsers_asking_for_html_get_the_page_with_its_policy() {
        let req = get(&[("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")]);
        assert!(wants_html(&req));
        assert!(!wants_html(&get(&[("accept", "application/json")])));
        assert!(!wants_html(&get(&[])));
        let res = page(&req);
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[REFERRER_POLICY], "no-referrer");
        assert!(
            h[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }

    #[test]
    fn assets_have_their_types_and_revalidate_with_their_etag() {
        let res = asset(&get(&[]), "app.js").unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(res.headers()[CACHE_CONTROL], "no-cache");
        let tag = res.headers()[ETAG].to_str().unwrap().to_owned();
        let again = asset(&get(&[("if-none-match", &tag)]), "app.js").unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let css = asset(&get(&[]), "style.css").unwrap();
        assert!(
            css.headers()[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        assert!(asset(&get(&[]), "../Cargo.toml").is_err());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(INDEX).unwrap();
        assert!(!html.contains("style=\""), "no style attributes");
        assert!(!html.contains("<style"), "no style elements");
        for part in html.split("<script").skip(1) {
            let tag = part.split('>').next().unwrap();
            assert!(
                tag.contains("src="),
                "every script is a file: <script{tag}>"
            );
        }
        let handler = html.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "no inline event handlers: on{handler:?}");
    }
}
