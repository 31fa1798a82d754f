//! The permessage-deflate settings (`--ws-deflate*`), flattened into [`Config`](super::Config).
//!
//! Why the defaults: measured in docs/ENCODINGS.md ("permessage-deflate"), same run
//! (`cargo bench --bench encode -- deliver`, 2 cores): a delivery to a compressing client
//! costs ~37x a plain one (2.4 µs against 65 ns; 9.2 µs without context takeover), and
//! each client with context takeover holds ~140 KiB of deflate state while it receives, for
//! frames 3.3x smaller (49.7 against 165.9 bytes per tick). Browsers and Python `websockets`
//! offer the extension unasked, so turning it on puts every such client on its own
//! compressor: that is an operator's choice (`--ws-deflate on`), bounded by
//! `--ws-deflate-max-clients`.

use clap::{Args, ValueEnum};

use super::defaults;

/// Whether the relay negotiates permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WsDeflate {
    /// Never: offers are ignored and every client gets the shared, uncompressed frames.
    Off,
    /// Accept a client's permessage-deflate offer (up to `--ws-deflate-max-clients`).
    On,
}

/// The permessage-deflate knobs.
#[derive(Clone, Debug, Args)]
pub struct DeflateConfig {
    /// permessage-deflate (RFC 7692) for clients that offer it: `off` or `on`. Off by
    /// default: a compressing client costs ~37x the CPU per delivery of a plain one and
    /// ~140 KiB while it receives, and browsers offer it unasked (docs/ENCODINGS.md).
    #[arg(long, value_enum, default_value_t = defaults::WS_DEFLATE)]
    pub ws_deflate: WsDeflate,

    /// Messages shorter than this many bytes go out uncompressed to compressing clients
    /// (the shared frame, no deflate work). 0 compresses everything: with context takeover
    /// even a 166-byte tick shrinks to under a third (49.7 bytes).
    #[arg(long, default_value_t = defaults::WS_DEFLATE_MIN_BYTES)]
    pub ws_deflate_min_bytes: usize,

    /// Most clients compressing at once; further clients negotiate nothing and get plain
    /// frames. 1,000 × ~150 KiB of deflate state bounds compression near 150 MiB, and 1,000
    /// × 2.4 µs per tick is already a core at ~400 ticks/s each.
    #[arg(long, default_value_t = defaults::WS_DEFLATE_MAX_CLIENTS)]
    pub ws_deflate_max_clients: usize,
}

impl DeflateConfig {
    /// The defaults (as the command line gives them).
    pub fn new() -> Self {
        Self {
            ws_deflate: defaults::WS_DEFLATE,
            ws_deflate_min_bytes: defaults::WS_DEFLATE_MIN_BYTES,
            ws_deflate_max_clients: defaults::WS_DEFLATE_MAX_CLIENTS,
        }
    }
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::new()
    }
}
