//! One router: method + path to handler. Aliases of the original system's
//! paths live here. [`ROUTES`] lists every route template, for documentation
//! checks and metrics labels.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, HeaderValue};
use http::{Method, Request};
use hyper::body::Incoming;

use super::handlers;
use super::response::{HttpResponse, error};
use crate::error::ErrorCode;
use crate::http::error::ApiError;
use crate::state::AppState;

/// A route template and the methods it answers.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub template: &'static str,
    pub methods: &'static [&'static str],
}

/// Every route the router serves.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        template: "/",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/ws",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/metrics",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/healthz",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/readyz",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/signup",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/signin",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/create-product",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/products",
        methods: &["GET", "POST"],
    },
    RouteSpec {
        template: "/api/products/{id}",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/create-flash-sale",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/flash-sales",
        methods: &["GET", "POST"],
    },
    RouteSpec {
        template: "/api/flash-sales/{id}",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/flash-sales/{id}/rerun",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/flash-sales/{id}/cancel",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/purchase-product",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/orders",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/leaderboard",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/admin/reconcile",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/admin/blocklist",
        methods: &["GET", "POST", "DELETE"],
    },
    RouteSpec {
        template: "/api/fraud/events",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/openapi.json",
        methods: &["GET"],
    },
    RouteSpec {
        template: "/api/admin/users/{id}/role",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/api/ws-ticket",
        methods: &["POST"],
    },
    RouteSpec {
        template: "/assets/{file}",
        methods: &["GET"],
    },
];

/// A matched route with its path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Root,
    Ws,
    Metrics,
    Healthz,
    Readyz,
    Signup,
    Signin,
    CreateProduct,
    Products,
    Product(&'a str),
    CreateSale,
    Sales,
    Sale(&'a str),
    Rerun(&'a str),
    Cancel(&'a str),
    Purchase,
    Orders,
    Leaderboard,
    Reconcile,
    Blocklist,
    FraudEvents,
    OpenApi,
    UserRole(&'a str),
    WsTicket,
    Asset(&'a str),
}

impl Route<'_> {
    fn spec(self) -> &'static RouteSpec {
        let i = match self {
            Self::Root => 0,
            Self::Ws => 1,
            Self::Metrics => 2,
            Self::Healthz => 3,
            Self::Readyz => 4,
            Self::Signup => 5,
            Self::Signin => 6,
            Self::CreateProduct => 7,
            Self::Products => 8,
            Self::Product(_) => 9,
            Self::CreateSale => 10,
            Self::Sales => 11,
            Self::Sale(_) => 12,
            Self::Rerun(_) => 13,
            Self::Cancel(_) => 14,
            Self::Purchase => 15,
            Self::Orders => 16,
            Self::Leaderboard => 17,
            Self::Reconcile => 18,
            Self::Blocklist => 19,
            Self::FraudEvents => 20,
            Self::OpenApi => 21,
            Self::UserRole(_) => 22,
            Self::WsTicket => 23,
            Self::Asset(_) => 24,
        };
        &ROUTES[i]
    }
}

fn match_path(path: &str) -> Option<Route<'_>> {
    Some(match path {
        "/" => Route::Root,
        "/ws" => Route::Ws,
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/api/signup" => Route::Signup,
        "/api/signin" => Route::Signin,
        "/api/create-product" => Route::CreateProduct,
        "/api/products" => Route::Products,
        "/api/create-flash-sale" => Route::CreateSale,
        "/api/flash-sales" => Route::Sales,
        "/api/purchase-product" => Route::Purchase,
        "/api/orders" => Route::Orders,
        "/api/leaderboard" => Route::Leaderboard,
        "/api/admin/reconcile" => Route::Reconcile,
        "/api/admin/blocklist" => Route::Blocklist,
        "/api/fraud/events" => Route::FraudEvents,
        "/openapi.json" => Route::OpenApi,
        "/api/ws-ticket" => Route::WsTicket,
        _ => {
            if let Some(file) = path.strip_prefix("/assets/") {
                return (!file.is_empty() && !file.contains('/')).then_some(Route::Asset(file));
            }
            if let Some(id) = path.strip_prefix("/api/products/") {
                return (!id.is_empty() && !id.contains('/')).then_some(Route::Product(id));
            }
            if let Some(rest) = path.strip_prefix("/api/admin/users/") {
                let id = rest.strip_suffix("/role")?;
                return (!id.is_empty() && !id.contains('/')).then_some(Route::UserRole(id));
            }
            let rest = path.strip_prefix("/api/flash-sales/")?;
            let mut parts = rest.split('/');
            let id = parts.next().filter(|s| !s.is_empty())?;
            match (parts.next(), parts.next()) {
                (None, _) => Route::Sale(id),
                (Some("rerun"), None) => Route::Rerun(id),
                (Some("cancel"), None) => Route::Cancel(id),
                _ => return None,
            }
        }
    })
}

/// The route template a path matches, for metric labels.
pub fn template_of(path: &str) -> &'static str {
    match_path(path).map_or("unmatched", |r| r.spec().template)
}

/// Dispatches one request, renders any error, and records the request's
/// metrics under its route template.
pub async fn route(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let method = method_label(req.method());
    // The path is matched once; the route borrows from this copy.
    let path = req.uri().path().to_owned();
    let matched = match_path(&path);
    let template = matched.map_or("unmatched", |r| r.spec().template);
    let res = match matched {
        Some(route) => dispatch(state, req, peer, route).await,
        None => error(&ApiError::new(
            ErrorCode::RouteNotFound,
            format!("no route for {path}"),
        )),
    };
    crate::metrics::http_request(
        template,
        method,
        status_label(res.status().as_u16()),
        started.elapsed().as_secs_f64(),
    );
    res
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Status codes as static labels (a bounded set).
fn status_label(s: u16) -> &'static str {
    const EXACT: &[(u16, &str)] = &[
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (426, "426"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    if let Some((_, label)) = EXACT.iter().find(|(code, _)| *code == s) {
        return label;
    }
    match s / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

async fn dispatch(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    route: Route<'_>,
) -> HttpResponse {
    let method = req.method().clone();
    let probe = matches!(route, Route::Healthz | Route::Readyz | Route::Metrics);
    // IP rules come before any work, except for the probes.
    let ip = crate::net::client_ip(peer.ip(), req.headers(), &state.config.http.trust_proxy);
    if !probe && let Err(e) = state.fraud.check_ip(ip) {
        return error(&e.into());
    }
    // A sign-in over its address's rate or failure budget is refused before
    // it costs a slot, a MongoDB lookup or a hash.
    let standing = if route == Route::Signin {
        match state.fraud.admit_signin(ip) {
            Ok(standing) => Some(standing),
            Err(denied) => {
                crate::metrics::signin_penalized();
                return error(&denied.into());
            }
        }
    } else {
        None
    };
    let clean_signin = standing.is_some_and(|s| s.is_clean());
    // A sign-in refused below did no work: its failure goes back, unless
    // its address keeps failing.
    let refused = |class| {
        if standing.is_some_and(|s| !s.keeps_refusals()) {
            state.fraud.signin_succeeded(ip);
        }
        overloaded(class)
    };
    // The body is read before the request takes an in-flight slot, within a
    // size and a time limit, so a slow sender holds only its own connection.
    let req = match read_body(state, req).await {
        Ok(req) => req,
        Err(e) => return error(&e),
    };
    // Admission control: past the in-flight limit, refuse at once rather than
    // queue until the client times out. Probes and metrics are never refused.
    // Sign-in and sign-up also need one of their class's permits, so they
    // cannot take the slots purchases and reads need; sign-ins from
    // addresses without failures keep most of the share.
    let _auth_permit = if matches!(route, Route::Signin | Route::Signup) {
        let pool = if clean_signin {
            &state.auth_admission.clean
        } else {
            &state.auth_admission.failing
        };
        match pool.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return refused("auth"),
        }
    } else {
        None
    };
    let _permit = if probe {
        None
    } else {
        match state.admission.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return refused("all"),
        }
    };
    let result = match (&method, route) {
        // The upgrade first: a browser's WebSocket on / may send any Accept.
        (&Method::GET, Route::Root)
            if !hyper_tungstenite::is_upgrade_request(&req)
                && handlers::console::wants_html(&req) =>
        {
            Ok(handlers::console::page(&req))
        }
        (&Method::GET, Route::Root | Route::Ws) => {
            super::handlers::ws::upgrade(state, req, peer).await
        }
        (&Method::GET, Route::Asset(file)) => handlers::console::asset(&req, file),
        (&Method::GET, Route::Metrics) => handlers::metrics::metrics(),
        (&Method::GET | &Method::HEAD, Route::Healthz) => handlers::health::healthz(),
        (&Method::GET | &Method::HEAD, Route::Readyz) => handlers::health::readyz(state).await,
        (&Method::POST, Route::Signup) => handlers::auth::signup(state, req, ip).await,
        (&Method::POST, Route::Signin) => handlers::auth::signin(state, req, ip).await,
        (&Method::POST, Route::CreateProduct | Route::Products) => {
            handlers::products::create(state, req).await
        }
        (&Method::GET, Route::Products) => handlers::products::list(state, req).await,
        (&Method::GET, Route::Product(id)) => handlers::products::get(state, &req, id).await,
        (&Method::POST, Route::CreateSale | Route::Sales) => {
            handlers::sales::create(state, req).await
        }
        (&Method::GET, Route::Sales) => handlers::sales::list(state, &req).await,
        (&Method::GET, Route::Sale(id)) => handlers::sales::get(state, &req, id).await,
        (&Method::POST, Route::Rerun(id)) => handlers::sales::rerun(state, req, id).await,
        (&Method::POST, Route::Cancel(id)) => handlers::sales::cancel(state, &req, id).await,
        (&Method::POST, Route::Purchase) => handlers::purchase::purchase(state, req, peer).await,
        (&Method::GET, Route::Orders) => handlers::orders::list(state, &req).await,
        (&Method::GET, Route::Leaderboard) => handlers::leaderboard::page(state, &req).await,
        (&Method::GET, Route::Reconcile) => handlers::orders::reconcile(state, &req).await,
        (&Method::GET, Route::Blocklist) => handlers::fraud::list_blocklist(state, &req).await,
        (&Method::POST, Route::Blocklist) => handlers::fraud::add_to_blocklist(state, req).await,
        (&Method::DELETE, Route::Blocklist) => {
            handlers::fraud::remove_from_blocklist(state, &req).await
        }
        (&Method::GET, Route::FraudEvents) => handlers::fraud::events(state, &req).await,
        (&Method::GET, Route::OpenApi) => handlers::openapi::document(),
        (&Method::POST, Route::UserRole(id)) => handlers::users::set_role(state, req, id).await,
        (&Method::POST, Route::WsTicket) => handlers::ws::ticket(state, &req).await,
        _ => {
            let allow = route.spec().methods.join(", ");
            let mut res = error(&ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "{method} is not allowed on {}; allowed: {allow}",
                    route.spec().template
                ),
            ));
            if let Ok(v) = HeaderValue::from_str(&allow) {
                res.headers_mut().insert(ALLOW, v);
            }
            return res;
        }
    };
    match result {
        Ok(res) => res,
        Err(e) => error(&e),
    }
}

/// The request with its body read: the whole body for methods that carry
/// one, none for the others (a body sent with GET is not read).
async fn read_body(state: &AppState, req: Request<Incoming>) -> Result<Request<Bytes>, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Bytes::new()
    } else {
        let cfg = &state.config.http;
        super::extract::body_bytes(
            &parts.headers,
            body,
            cfg.max_body_bytes,
            cfg.body_read_timeout,
        )
        .await?
    };
    Ok(Request::from_parts(parts, bytes))
}

/// The 503 of admission control, counted under its class.
fn overloaded(class: &'static str) -> HttpResponse {
    crate::metrics::admission_rejected(class);
    error(
        &ApiError::new(
            ErrorCode::Unavailable,
            "the service is overloaded, retry shortly",
        )
        .with_retry_after(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_aliases_match_their_templates() {
        assert_eq!(template_of("/api/create-product"), "/api/create-product");
        assert_eq!(template_of("/api/products/abc"), "/api/products/{id}");
        assert_eq!(template_of("/api/flash-sales/abc"), "/api/flash-sales/{id}");
        assert_eq!(
            template_of("/api/flash-sales/abc/rerun"),
            "/api/flash-sales/{id}/rerun"
        );
        assert_eq!(
            template_of("/api/flash-sales/abc/cancel"),
            "/api/flash-sales/{id}/cancel"
        );
        assert_eq!(template_of("/api/flash-sales/abc/other"), "unmatched");
        assert_eq!(template_of("/api/flash-sales/"), "unmatched");
        assert_eq!(template_of("/nope"), "unmatched");
        assert_eq!(
            template_of("/api/admin/users/abc/role"),
            "/api/admin/users/{id}/role"
        );
        assert_eq!(template_of("/api/admin/users/abc"), "unmatched");
        assert_eq!(template_of("/api/admin/users//role"), "unmatched");
        assert_eq!(template_of("/assets/app.js"), "/assets/{file}");
        assert_eq!(template_of("/assets/a/b.js"), "unmatched");
        assert_eq!(template_of("/assets/"), "unmatched");
    }

    #[test]
    fn every_route_spec_is_reachable() {
        for (i, spec) in ROUTES.iter().enumerate() {
            let path = spec.template.replace("{id}", "x").replace("{file}", "x");
            let r = match_path(&path).unwrap_or_else(|| panic!("{path} unmatched"));
            assert_eq!(r.spec().template, spec.template, "route {i}");
        }
    }
}
