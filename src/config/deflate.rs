//! The permessage-deflate settings (`--ws-deflate*`), flattened into [`Config`](super::Config).
//!
//! Why the defaults: measured in docs/ENCODINGS.md ("permessage-deflate"), same run
//! (`cargo bench --bench encode`, 2 cores): a delivery to a compressing client costs ~35x a
//! plain one (1.30 µs against 37.5 ns; 5.6 µs without context takeover), and each client
//! with context takeover holds ~270 KiB of deflate state while it receives, for frames 3.3x
//! smaller (49.7 against 165.9 bytes per tick). Browsers and Python `websockets`
//! offer the extension unasked, so turning it on puts every such client on its own
//! compressor: that is an operator's choice (`--ws-deflate on`), bounded by
//! `--ws-deflate-max-clients`.

use clap::Args;

use super::defaults;
use super::values::WsDeflate;

/// The permessage-deflate knobs.
#[derive(Clone, Debug, Args)]
pub struct DeflateConfig {
    /// permessage-deflate (RFC 7692) for clients that offer it: `off` or `on`. Off by
    /// default: a compressing client costs ~35x the CPU per delivery of a plain one and
    /// ~270 KiB while it receives, and browsers offer it unasked (docs/ENCODINGS.md).
    #[arg(long, value_enum, default_value_t = defaults::WS_DEFLATE)]
    pub ws_deflate: WsDeflate,

    /// Messages shorter than this many bytes go out uncompressed to compressing clients
    /// (the shared frame, no deflate work). 0 compresses everything: with context takeover
    /// even a 166-byte tick shrinks to under a third (49.7 bytes).
    #[arg(long, default_value_t = defaults::WS_DEFLATE_MIN_BYTES, value_parser = super::parse_size)]
    pub ws_deflate_min_bytes: usize,

    /// Most clients compressing at once; further clients negotiate nothing and get plain
    /// frames. 1,000 × ~270 KiB of deflate state bounds compression near 270 MiB, and 1,000
    /// × 1.3 µs per tick is already a core at ~770 ticks/s each.
    #[arg(long, default_value_t = defaults::WS_DEFLATE_MAX_CLIENTS)]
    pub ws_deflate_max_clients: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::Settings;

    #[test]
    fn the_deflate_settings_come_from_flags_env_and_the_file() {
        let file =
            std::env::temp_dir().join(format!("tickrelay-deflate-{}.toml", std::process::id()));
        std::fs::write(&file, "ws-deflate = \"on\"\nws-deflate-max-clients = 3\n").unwrap();
        let file_arg = file.display().to_string();
        let loaded = Settings::load(
            [
                "tickrelay",
                "--config",
                &file_arg,
                "--ws-deflate-min-bytes",
                "64",
            ],
            [("TICKRELAY_WS_DEFLATE_MAX_CLIENTS", "5")],
        )
        .expect("valid settings");
        let deflate = &loaded.cli.config.deflate;
        assert_eq!(
            (
                deflate.ws_deflate,
                deflate.ws_deflate_min_bytes,
                deflate.ws_deflate_max_clients
            ),
            (WsDeflate::On, 64, 5),
            "file, flag, and env over file"
        );
        let defaults = Settings::load(["tickrelay"], [("HOME", "/")]).expect("no settings");
        assert_eq!(defaults.cli.config.deflate.ws_deflate, WsDeflate::Off);
        assert!(Settings::load(["tickrelay", "--ws-deflate", "maybe"], [("HOME", "/")]).is_err());
        let _ = std::fs::remove_file(file);
    }
}
