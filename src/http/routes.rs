//! The route table: every HTTP route's method, path and who may call it, written once
//! ([`routes!`]); matching a path, the method check, and which port serves a route with
//! `--admin-listen` all read it.

use hyper::Method;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port (health, the dashboard's files).
    Open,
    /// What `/ws` wants when auth is on: a valid token, or `--allow-anonymous`; answers only
    /// what the token's `allow` reads.
    Reader,
    /// Anyone who reaches the port, on `--admin-listen` when it is set (`/stats`,
    /// `/metrics`: operators' readings, nothing a client could act on).
    Operator,
    /// The admin token, or without one this host's own request (`http/guard.rs`); on
    /// `--admin-listen` when it is set.
    Admin,
}

/// How a route's path matches a request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Matching {
    /// The whole path.
    Exact,
    /// The path starts with it (the rest is the route's argument).
    Prefix,
}

/// The route table: `Name METHOD "path" Exact|Prefix Access;`, one row per route, with its
/// doc line.
macro_rules! routes {
    ($( $(#[doc = $doc:literal])* $name:ident $method:ident $path:literal $matching:ident $access:ident; )*) => {
        /// Every route.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Route {
            $( $(#[doc = $doc])* $name, )*
        }

        /// Every route with its path, in table order (an exact path before a prefix of it).
        pub const ROUTES: &[(Route, &str)] = &[$((Route::$name, $path)),*];

        impl Route {
            /// The one method the route answers.
            pub fn method(self) -> Method {
                match self {
                    $( Self::$name => Method::$method, )*
                }
            }

            /// Who may call the route.
            pub fn access(self) -> Access {
                match self {
                    $( Self::$name => Access::$access, )*
                }
            }

            fn matching(self) -> Matching {
                match self {
                    $( Self::$name => Matching::$matching, )*
                }
            }
        }
    };
}

routes! {
    /// `GET /ws`: the WebSocket feed.
    Ws GET "/ws" Exact Reader;
    /// `GET /echo` (with `--conformance-echo`): the WebSocket echo for conformance suites.
    Echo GET "/echo" Exact Open;
    /// `GET /health`.
    Health GET "/health" Exact Open;
    /// `GET /ready`.
    Ready GET "/ready" Exact Open;
    /// `GET /stats`.
    Stats GET "/stats" Exact Operator;
    /// `GET /metrics`.
    Metrics GET "/metrics" Exact Operator;
    /// `GET /symbols`.
    Symbols GET "/symbols" Exact Reader;
    /// `GET /price/{symbol}`.
    Price GET "/price/" Prefix Reader;
    /// `GET /book/{symbol}?depth=N`: a book's top levels.
    Book GET "/book/" Prefix Reader;
    /// `POST /api/publish`.
    Publish POST "/api/publish" Exact Admin;
    /// `POST /api/events`.
    Events POST "/api/events" Exact Admin;
    /// `GET /api/sessions`.
    Sessions GET "/api/sessions" Exact Admin;
    /// `DELETE /api/sessions/{id}`.
    CloseSession DELETE "/api/sessions/" Prefix Admin;
    /// `GET /`: the dashboard.
    Dashboard GET "/" Exact Open;
    /// `GET /dashboard.js`: the dashboard's script.
    DashboardJs GET "/dashboard.js" Exact Open;
    /// `GET /dashboard-bars.js`: the dashboard's panel of 1 s bars and 24-hour statistics.
    DashboardBarsJs GET "/dashboard-bars.js" Exact Open;
    /// `GET /tickrelay.js`: the JavaScript client (`clients/js/`), which the dashboard uses.
    ClientJs GET "/tickrelay.js" Exact Open;
    /// `GET /book.js`: the JavaScript client's order books, imported by `/tickrelay.js`.
    ClientBookJs GET "/book.js" Exact Open;
    /// `GET /book-panel.js`: the dashboard's order-book panel.
    BookPanelJs GET "/book-panel.js" Exact Open;
    /// `GET /favicon.ico`: 204, so browsers opening the dashboard log no 404.
    Favicon GET "/favicon.ico" Exact Open;
}

impl Route {
    /// The route serving `path`, if any (`/echo` only when `echo` is on).
    pub fn find(path: &str, echo: bool) -> Option<Self> {
        let (route, _) = ROUTES
            .iter()
            .find(|(route, route_path)| match route.matching() {
                Matching::Prefix => path.starts_with(route_path),
                Matching::Exact => path == *route_path,
            })?;
        (*route != Self::Echo || echo).then_some(*route)
    }

    /// Whether `method` may be used: the route's own, or `HEAD` for a `GET` that is not a
    /// WebSocket upgrade (load balancers probe `HEAD /health`; hyper sends no body).
    pub fn allows(self, method: &Method) -> bool {
        *method == self.method()
            || (*method == Method::HEAD
                && self.method() == Method::GET
                && !matches!(self, Self::Ws | Self::Echo))
    }

    /// Whether the route is an operator's (publishing, the sessions API): guarded by the
    /// admin token, or this host's own request when none is configured.
    pub fn is_admin(self) -> bool {
        self.access() == Access::Admin
    }

    /// Whether `--admin-listen` serves the route (instead of the client port).
    pub fn on_admin_port(self) -> bool {
        matches!(self.access(), Access::Admin | Access::Operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_by_its_own_path_and_no_other_route_shadows_it() {
        for (route, path) in ROUTES {
            let request = match route.matching() {
                Matching::Prefix => format!("{path}x"),
                Matching::Exact => (*path).to_owned(),
            };
            assert_eq!(Route::find(&request, true), Some(*route), "{request}");
        }
        assert_eq!(Route::find("/echo", false), None);
        assert_eq!(Route::find("/nope", true), None);
    }
}
