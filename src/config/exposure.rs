//! [`Config::unauthenticated_surfaces`]: what the relay would serve without authentication
//! to hosts other than this one, named at start-up in a `WARN` line each.

use std::net::SocketAddr;

use super::Config;
use super::values::Role;

impl Config {
    /// Every surface bound beyond loopback (a wildcard or another interface's address) that
    /// checks no credential, as a sentence naming its flag and address: the ingest ports
    /// (never authenticated), `--listen` without a JWT key (every client reads everything),
    /// and the admin routes without `--admin-token-file` (they then trust loopback requests
    /// only, so a proxy or process on this host stands in for anyone).
    pub fn unauthenticated_surfaces(&self) -> Vec<String> {
        let beyond = |addr: &SocketAddr| !addr.ip().to_canonical().is_loopback();
        let mut surfaces = Vec::new();
        if self.scale.role != Role::Edge {
            for (flag, addr, what) in [
                ("--ingest-tcp", self.ingest_tcp, "ticks and events"),
                ("--ingest-tcp-protobuf", self.ingest_tcp_protobuf, "ticks"),
            ] {
                if beyond(&addr) {
                    surfaces.push(format!(
                        "{flag} {addr} is reachable beyond loopback and has no authentication: \
                         whoever reaches it publishes {what}"
                    ));
                }
            }
        }
        let keyed = self.jwt_secret_file.is_some()
            || self.jwt_public_key_file.is_some()
            || self.jwks_file.is_some()
            || self.jwks_url.is_some();
        if !keyed && beyond(&self.listen) {
            surfaces.push(format!(
                "--listen {} is reachable beyond loopback with no JWT key (--jwt-secret-file, \
                 --jwt-public-key-file, --jwks-file or --jwks-url): whoever reaches it reads \
                 every symbol and public channel",
                self.listen
            ));
        }
        let (admin_flag, admin_addr) = match self.admin_listen {
            Some(addr) => ("--admin-listen", addr),
            None => ("--listen", self.listen),
        };
        if self.admin_token_file.is_none() && beyond(&admin_addr) {
            surfaces.push(format!(
                "the admin routes on {admin_flag} {admin_addr} have no --admin-token-file: \
                 they answer loopback requests for this host's own address only, so any \
                 process or proxy on this host that forwards requests is an operator"
            ));
        }
        surfaces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::scale::Scale;

    fn flags(surfaces: &[String]) -> Vec<&str> {
        surfaces
            .iter()
            .map(|s| s.split(' ').next().unwrap_or_default())
            .collect()
    }

    #[test]
    fn every_unauthenticated_surface_beyond_loopback_is_named() {
        let local = Config::for_tests();
        assert!(
            local.unauthenticated_surfaces().is_empty(),
            "all on loopback"
        );

        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        let open = Config {
            ingest_tcp: any(7001),
            ingest_tcp_protobuf: "[::]:7002".parse().unwrap(),
            listen: "10.1.2.3:8080".parse().unwrap(),
            ..Config::for_tests()
        };
        let surfaces = open.unauthenticated_surfaces();
        assert_eq!(
            flags(&surfaces),
            ["--ingest-tcp", "--ingest-tcp-protobuf", "--listen", "the"]
        );
        assert!(surfaces[0].contains("0.0.0.0:7001"), "{}", surfaces[0]);
        assert!(
            surfaces[3].contains("--listen 10.1.2.3:8080"),
            "{}",
            surfaces[3]
        );

        let guarded = Config {
            jwt_secret_file: Some("key".into()),
            admin_token_file: Some("admin".into()),
            ingest_tcp_protobuf: "[::1]:7002".parse().unwrap(),
            ..open.clone()
        };
        assert_eq!(flags(&guarded.unauthenticated_surfaces()), ["--ingest-tcp"]);

        let split = Config {
            admin_listen: Some(any(9000)),
            jwks_url: Some("http://127.0.0.1/jwks".into()),
            listen: "127.0.0.1:8080".parse().unwrap(),
            ingest_tcp: "[::ffff:127.0.0.1]:7001".parse().unwrap(),
            ..Config::for_tests()
        };
        let surfaces = split.unauthenticated_surfaces();
        assert_eq!(surfaces.len(), 1, "{surfaces:?}");
        assert!(surfaces[0].contains("--admin-listen 0.0.0.0:9000"));

        let mut edge = open;
        edge.scale = Scale {
            role: Role::Edge,
            ..edge.scale.clone()
        };
        assert_eq!(
            flags(&edge.unauthenticated_surfaces()),
            ["--listen", "the"],
            "an edge binds no ingest port"
        );
    }
}
