//! Who may call a route, checked before it runs: the admin routes ([`admin`]) and the
//! HTTP reads of market data, `/price/{symbol}` and `/symbols` ([`reader`]).
//!
//! Admin: with `--admin-token-file`, the token decides. Without one the routes answer
//! loopback peers, and a loopback peer is not enough by itself: a page in the operator's
//! browser, a DNS-rebinding page, or a proxy on the same host all reach the relay from
//! loopback on someone else's behalf. So a tokenless admin request must also name the
//! relay's own address in `Host` (or an `--admin-allow-host`), carry no forwarding header,
//! come from no other web page (`Origin`, `Sec-Fetch-Site`), and post JSON or NDJSON only
//! (what a form or a cross-site `text/plain` request cannot send without a preflight).
//!
//! Reads: with a key configured, `/price` and `/symbols` want what `/ws` wants, a valid
//! token (`Authorization: Bearer` or `?token=`) or `--allow-anonymous`, and answer only what
//! the token's `allow` lets it read.

use std::net::{IpAddr, SocketAddr};

use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderName, ORIGIN};

use crate::auth::{self, AdminAccess, AdminRefusal, AuthError, Identity, Token};
use crate::config::Config;
use crate::error::clip;
use crate::shared::Shared;

/// Where a request came in: which port, from which peer, at which local address.
#[derive(Clone, Copy, Debug)]
pub(super) struct Port {
    /// Accepted on `--admin-listen`.
    pub(super) admin_port: bool,
    /// The peer's address.
    pub(super) peer: Option<IpAddr>,
    /// The address the connection was accepted on.
    pub(super) local: Option<SocketAddr>,
}

/// Whether `request` may use an admin route.
pub(super) fn admin<B>(
    shared: &Shared,
    port: Port,
    request: &Request<B>,
) -> Result<(), AdminRefusal> {
    let headers = request.headers();
    let authorization = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    match shared.auth.admin_allowed(port.peer, authorization)? {
        AdminAccess::Token => Ok(()),
        AdminAccess::Loopback => {
            // The default port of the scheme the client used, for a `Host` without one.
            let tls = shared.tls.is_some() && !port.admin_port;
            local_request(&shared.config, port.local, tls, request)
        }
    }
}

/// The identity reading `/price` or `/symbols`: its token's (header or `?token=`), or the
/// tokenless one (auth off, or `--allow-anonymous`); `Err` when it may not read at all.
pub(super) fn reader<B>(shared: &Shared, request: &Request<B>) -> Result<Identity, AuthError> {
    let header = request.headers().get(AUTHORIZATION);
    let query = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, token)| token.into_owned());
    let token = match (header, query) {
        (Some(_), Some(_)) => {
            return Err(AuthError::Invalid(
                "give the token once: Authorization header or ?token=".into(),
            ));
        }
        (Some(value), None) => Some(
            auth::bearer(value.as_bytes())
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(str::to_owned)
                .ok_or_else(|| {
                    AuthError::Invalid("the Authorization header must be `Bearer <token>`".into())
                })?,
        ),
        (None, query) => query,
    };
    match token {
        Some(token) => shared.auth.verify(&Token(token)),
        None => shared.auth.tokenless().ok_or(AuthError::Missing),
    }
}

/// The checks a tokenless admin request from a loopback peer must pass (see the module doc).
fn local_request<B>(
    config: &Config,
    local: Option<SocketAddr>,
    tls: bool,
    request: &Request<B>,
) -> Result<(), AdminRefusal> {
    let headers = request.headers();
    if let Some(name) = FORWARDING.iter().find(|name| headers.contains_key(**name)) {
        return Err(AdminRefusal::Proxied(name));
    }
    let host = header(headers, &HOST)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default();
    if !host_allowed(&host, local, &config.admin_allow_host, tls) {
        return Err(AdminRefusal::WrongHost(clip(&host)));
    }
    if let Some(origin) = header(headers, &ORIGIN)
        && !["http://", "https://"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")))
    {
        return Err(AdminRefusal::CrossSite(format!(
            "Origin `{}`",
            clip(&origin)
        )));
    }
    // Sec-Fetch-Site (Fetch Metadata): `none` is a navigation the user made (an address
    // typed or a bookmark), `same-origin` a page of this relay; anything else another site.
    if let Some(site) = header(headers, &SEC_FETCH_SITE)
        && !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Err(AdminRefusal::CrossSite(format!(
            "Sec-Fetch-Site `{}`",
            clip(&site)
        )));
    }
    if request.method() == hyper::Method::POST
        && let Some(content_type) = header(headers, &CONTENT_TYPE)
    {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !ADMIN_MEDIA_TYPES
            .iter()
            .any(|accepted| media.eq_ignore_ascii_case(accepted))
        {
            return Err(AdminRefusal::ContentType(clip(&content_type)));
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` header) names this relay as a loopback client reaches it:
/// `localhost` or a loopback address (or the address connected to) with the port connected
/// to, or one of the `--admin-allow-host` values as written.
fn host_allowed(host: &str, local: Option<SocketAddr>, allowed: &[String], tls: bool) -> bool {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return true;
    }
    let Some(local) = local else {
        return false;
    };
    let (name, port) = match host.strip_prefix('[') {
        Some(bracketed) => {
            let Some((ip, rest)) = bracketed.split_once(']') else {
                return false;
            };
            match rest.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None if rest.is_empty() => (ip, None),
                None => return false,
            }
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = match port {
        None => Some(if tls { 443 } else { 80 }),
        Some(port) => port.parse::<u16>().ok(),
    };
    port == Some(local.port())
        && (name.eq_ignore_ascii_case("localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback() || ip == local.ip()))
}

/// A header's value as text (`None` when absent or not visible ASCII).
fn header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Headers a forwarding proxy adds: a request carrying one is someone else's.
const FORWARDING: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
];
/// The Fetch Metadata header browsers send with every request.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
/// What a tokenless admin `POST` may carry (or no `Content-Type` at all): the bodies
/// publish and events take, and nothing an HTML form can send.
const ADMIN_MEDIA_TYPES: [&str; 2] = ["application/json", "application/x-ndjson"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_must_be_this_relay_as_reached_on_loopback() {
        let local = Some(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let ok = |host| host_allowed(host, local, &[], false);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
            "127.0.0.2:8080",
        ] {
            assert!(ok(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "localhost",
            "127.0.0.1",
            "[::1",
            "",
            "localhost:",
            "localhost:80:8080",
            "10.0.0.1:8080",
        ] {
            assert!(!ok(host), "{host}");
        }
        let allowed = ["relay.internal:8080".to_owned()];
        assert!(host_allowed("Relay.Internal:8080", local, &allowed, false));
        assert!(!host_allowed("relay.internal:9", local, &allowed, false));
        let web = Some(SocketAddr::from(([127, 0, 0, 1], 443)));
        assert!(
            host_allowed("localhost", web, &[], true),
            "https default port"
        );
        assert!(!host_allowed("localhost", web, &[], false));
        let mapped = Some("[::ffff:127.0.0.1]:8080".parse().unwrap());
        assert!(host_allowed("[::ffff:127.0.0.1]:8080", mapped, &[], false));
    }
}
