//! One router: method + path to handler. Aliases of the original system's
//! paths live here. [`ROUTES`] lists every route template, for documentation
//! checks and metrics labels.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{ALLOW, HeaderValue};
use http::{Method, Request};
use hyper::body::Incoming;

use super::extract;
use super::handlers;
use super::response::{HttpResponse, error};
use crate::app::AppState;
use crate::error::{ApiError, ErrorCode};

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
];

/// A matched route with its path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Root,
    Ws,
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
}

impl Route<'_> {
    fn spec(self) -> &'static RouteSpec {
        let i = match self {
            Self::Root => 0,
            Self::Ws => 1,
            Self::Healthz => 2,
            Self::Readyz => 3,
            Self::Signup => 4,
            Self::Signin => 5,
            Self::CreateProduct => 6,
            Self::Products => 7,
            Self::Product(_) => 8,
            Self::CreateSale => 9,
            Self::Sales => 10,
            Self::Sale(_) => 11,
            Self::Rerun(_) => 12,
            Self::Cancel(_) => 13,
            Self::Purchase => 14,
            Self::Orders => 15,
            Self::Leaderboard => 16,
            Self::Reconcile => 17,
            Self::Blocklist => 18,
            Self::FraudEvents => 19,
        };
        &ROUTES[i]
    }
}

fn match_path(path: &str) -> Option<Route<'_>> {
    Some(match path {
        "/" => Route::Root,
        "/ws" => Route::Ws,
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
        _ => {
            if let Some(id) = path.strip_prefix("/api/products/") {
                return (!id.is_empty() && !id.contains('/')).then_some(Route::Product(id));
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

/// Dispatches one request and renders any error.
pub async fn route(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> HttpResponse {
    let path = req.uri().path().to_owned();
    let Some(route) = match_path(&path) else {
        return error(&ApiError::new(
            ErrorCode::RouteNotFound,
            format!("no route for {path}"),
        ));
    };
    let method = req.method().clone();
    // IP rules come before any work, except for the probes.
    let ip = extract::client_ip(peer.ip(), req.headers(), &state.config.http.trust_proxy);
    if !matches!(route, Route::Healthz | Route::Readyz)
        && let Err(e) = state.fraud.check_ip(ip)
    {
        return error(&e);
    }
    let result = match (&method, route) {
        (&Method::GET, Route::Root | Route::Ws) => crate::realtime::upgrade(state, req, peer),
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
    }

    #[test]
    fn every_route_spec_is_reachable() {
        for (i, spec) in ROUTES.iter().enumerate() {
            let path = spec.template.replace("{id}", "x");
            let r = match_path(&path).unwrap_or_else(|| panic!("{path} unmatched"));
            assert_eq!(r.spec().template, spec.template, "route {i}");
        }
    }
}
