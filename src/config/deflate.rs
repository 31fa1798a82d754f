//! The permessage-deflate settings (`--ws-deflate*`), flattened into [`Config`](super::Config).
//!
//! Why the defaults: measured in docs/ENCODINGS.md ("permessage-deflate"), same run:
//! compressing a tick for one client costs a few microseconds where a plain delivery is a
//! refcount bump of a few nanoseconds, and each client with context takeover holds ~270 KiB
//! of deflate state while it receives. Browsers and Python `websockets` offer the extension
//! by default, so turning it on puts every such client on its own compressor: that is an
//! operator's choice (`--ws-deflate on`), bounded by `--ws-deflate-max-clients`.

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
    /// default: a compressing client costs ~1,000x the CPU per delivery of a plain one and
    /// ~270 KiB while it receives, and browsers offer it unasked (docs/ENCODINGS.md).
    #[arg(long, value_enum, default_value_t = defaults::WS_DEFLATE)]
    pub ws_deflate: WsDeflate,

    /// Messages shorter than this many bytes go out uncompressed to compressing clients
    /// (the shared frame, no deflate work). 0 compresses everything: with context takeover
    /// even a 150-byte tick shrinks to about a third.
    #[arg(long, default_value_t = defaults::WS_DEFLATE_MIN_BYTES)]
    pub ws_deflate_min_bytes: usize,

    /// Most clients compressing at once; further clients negotiate nothing and get plain
    /// frames. 1,000 × ~270 KiB of deflate state bounds compression near 270 MiB.
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
