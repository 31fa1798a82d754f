//! Symbol names the harness makes (`SYM000`, `SYM001`, ...) and their indexes: the publisher
//! names what it publishes, a client names what it subscribes to and maps what it receives
//! back to an index.

/// The name of symbol `id` among `count` symbols: `SYM000`..`SYM099`, wider past 1000.
pub fn symbol_name(id: u32, count: u32) -> String {
    let width = count.saturating_sub(1).to_string().len().max(3);
    format!("SYM{id:0width$}")
}

/// Maps a symbol name `SYM042` to its index (42); names the harness did not make give `None`.
pub fn symbol_id(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"SYM")?;
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_names_round_trip() {
        assert_eq!(symbol_name(42, 100), "SYM042");
        assert_eq!(symbol_name(7, 5000), "SYM0007");
        assert_eq!(symbol_id(b"SYM042"), Some(42));
        assert_eq!(symbol_id(b"SYM0007"), Some(7));
        assert_eq!(symbol_id(b"BTC-USD"), None);
        assert_eq!(symbol_id(b"SYM"), None);
        assert_eq!(symbol_id(b"SYM4x"), None);
    }
}
