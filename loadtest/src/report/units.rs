//! How the report writes times and sizes.

/// µs as `850µs` / `12.3ms` / `1.20s`.
pub(super) fn us(v: u64) -> String {
    match v {
        0..1_000 => format!("{v}µs"),
        1_000..1_000_000 => format!("{:.1}ms", v as f64 / 1e3),
        _ => format!("{:.2}s", v as f64 / 1e6),
    }
}

pub(super) fn mib(kb: u64) -> String {
    format!("{:.1}MiB", kb as f64 / 1024.0)
}

pub(super) fn yes(clean: bool) -> &'static str {
    if clean { "yes" } else { "**no**" }
}

/// A ratio as `1.41`, small ones with three decimals (`0.002`, not `0.00`), `∞` when only
/// the subject had the figure, `-` when neither did.
pub(super) fn ratio(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_infinite() => "∞".into(),
        Some(v) if v != 0.0 && v.abs() < 0.1 => format!("{v:.3}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(us(850), "850µs");
        assert_eq!(us(12_345), "12.3ms");
        assert_eq!(us(1_200_000), "1.20s");
        assert_eq!(mib(2048), "2.0MiB");
        assert_eq!(ratio(Some(1.414)), "1.41");
        assert_eq!(ratio(Some(36.2 / 15_920.0)), "0.002");
        assert_eq!(ratio(Some(f64::INFINITY)), "∞");
        assert_eq!(ratio(None), "-");
    }
}
