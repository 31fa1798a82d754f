//! Prices and sizes exactly as published: text → a normalised [`Decimal`], and back to its
//! shortest exact text.
//!
//! A level's key is the number, not its spelling: `43250.50`, `43250.5` and `4.32505e4` are
//! one price, because every parsed value is normalised (trailing zeros dropped, `-0` made
//! `0`), and two normalised decimals are equal exactly when their text is. No float ever
//! holds a price, so nothing is rounded: a value that needs more than 28 decimal places or
//! 96 bits of digits is refused, never approximated.

use rust_decimal::Decimal;

use super::LevelError;

/// Parses a price or size: `-`, digits, optionally `.` and digits, optionally an exponent
/// (`e`/`E`, a sign, digits) — a JSON number's grammar, also accepted inside a string.
/// `NaN`, `Infinity` and the like are [`LevelError::NotFinite`].
pub fn parse(text: &str) -> Result<Decimal, LevelError> {
    let unsigned = text.trim_start_matches(['+', '-']);
    if ["nan", "inf", "infinity"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
    {
        return Err(LevelError::NotFinite);
    }
    let exponent = well_formed(text).ok_or_else(|| LevelError::Malformed(clip(text)))?;
    let parsed = if exponent {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    // Too many digits or places: refusing is the only exact answer.
    let value = parsed.map_err(|_| LevelError::OutOfRange(clip(text)))?;
    Ok(value.normalize())
}

/// Appends the shortest exact text of `value` (normalised: no trailing zeros, no exponent).
pub fn write(out: &mut Vec<u8>, value: &Decimal) {
    out.extend_from_slice(value.array_string().as_ref().as_bytes());
}

/// The shortest exact text of `value`.
pub fn text(value: &Decimal) -> String {
    value.array_string().as_ref().to_owned()
}

/// Whether `text` follows the number grammar; `Some(true)` when it has an exponent.
fn well_formed(text: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    let digits = |at: &mut usize| {
        let start = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at > start
    };
    if !digits(&mut at) {
        return None;
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if !digits(&mut at) {
            return None;
        }
    }
    let mut exponent = false;
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        exponent = true;
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        if !digits(&mut at) {
            return None;
        }
    }
    (at == bytes.len()).then_some(exponent)
}

/// The first 40 characters of a bad value, for its error message.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shortest(text: &str) -> String {
        super::text(&parse(text).unwrap())
    }

    #[test]
    fn one_number_has_one_spelling() {
        assert_eq!(shortest("43250.50"), "43250.5");
        assert_eq!(shortest("43250.5"), "43250.5");
        assert_eq!(parse("43250.50").unwrap(), parse("43250.5").unwrap());
        assert_eq!(shortest("4.32505e4"), "43250.5");
        assert_eq!(shortest("1E-3"), "0.001");
        assert_eq!(shortest("2.000"), "2");
        assert_eq!(shortest("-0.0"), "0");
        assert_eq!(shortest("100"), "100");
        assert_eq!(
            shortest("0.0000000000000000000000000001"),
            "0.0000000000000000000000000001"
        );
    }

    #[test]
    fn what_is_not_a_finite_decimal_is_refused_by_reason() {
        for word in ["NaN", "nan", "Infinity", "-Infinity", "inf", "+inf"] {
            assert_eq!(parse(word), Err(LevelError::NotFinite), "{word}");
        }
        for bad in [
            "", "-", "1.", ".5", "1e", "1_000", "0x10", " 1", "1 ", "1.2.3", "+1", "--1",
        ] {
            assert!(
                matches!(parse(bad), Err(LevelError::Malformed(_))),
                "{bad:?}"
            );
        }
        for huge in ["1e400", "79228162514264337593543950336", "1.5e-40"] {
            assert!(
                matches!(parse(huge), Err(LevelError::OutOfRange(_))),
                "{huge}"
            );
        }
    }

    proptest! {
        /// Any decimal written with extra trailing zeros is the same level, and its text
        /// comes back without them.
        #[test]
        fn trailing_zeros_never_make_another_level(int in 0u64..1_000_000_000, frac in 0u32..100_000, zeros in 0usize..6) {
            let plain = format!("{int}.{frac:05}");
            let padded = format!("{plain}{}", "0".repeat(zeros));
            prop_assert_eq!(parse(&plain).unwrap(), parse(&padded).unwrap());
            let back = shortest(&padded);
            prop_assert_eq!(parse(&back).unwrap(), parse(&plain).unwrap());
            prop_assert!(!back.contains('.') || !back.ends_with('0'));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }
    }
}
