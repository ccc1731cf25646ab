//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`, …) parsed exactly.
//!
//! No crate on crates.io fits: `kube_quantity` parses the number through an `f64` (so large
//! byte counts lose precision) and reads a missing number as zero (`"Ki"` parses as 0), and
//! `k8s_quantity_parser` is unmaintained and also float-based. Quantities here are fixed point,
//! as upstream's `resource.Quantity` is: the value is kept exactly in nano units.
//!
//! Grammar (upstream `apimachinery/pkg/api/resource/quantity.go`):
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | <sign><number>
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedInteger> | "E" <signedInteger>
//! ```
//!
//! Behaviour shared with upstream: a value finer than one nano unit rounds up, away from zero
//! (`0.1n` is `1n`); `value()` and `milli_value()` round up; surrounding white space is
//! ignored (as upstream's JSON decoding trims it).
//!
//! Deliberate differences, both so that a typo can never count as "no request":
//! - a quantity without any digit (`""`, `"Ki"`, `"."`, `"+"`) is an error; upstream's scanner
//!   reads those as 0 (the API server stores them as `"0"`, so the scheduler never sees them
//!   from a real cluster);
//! - every magnitude is capped at 2^63−1 units (upstream caps only binary-SI quantities and lets
//!   `Value()` of a larger decimal one overflow).

use std::{fmt, str::FromStr};

/// Nano units per unit.
const NANO: i128 = 1_000_000_000;

/// The largest magnitude, in nano units: 2^63−1 units, so that `value()` always fits an `i64`.
const MAX_NANOS: i128 = i64::MAX as i128 * NANO;

/// A parsed quantity, exact to one nano unit (10^-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ParsedQuantity {
    nanos: i128,
}

impl ParsedQuantity {
    /// Zero.
    pub const ZERO: Self = Self { nanos: 0 };

    /// A quantity of `value` whole units.
    #[must_use]
    pub fn from_value(value: i64) -> Self {
        Self {
            nanos: i128::from(value) * NANO,
        }
    }

    /// A quantity of `milli` thousandths of a unit.
    #[must_use]
    pub fn from_milli(milli: i64) -> Self {
        Self {
            nanos: i128::from(milli) * 1_000_000,
        }
    }

    /// The value in nano units, exact.
    #[must_use]
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The value in whole units, rounded up (upstream `Quantity.Value()`).
    #[must_use]
    pub fn value(self) -> i64 {
        saturate_i64(ceil_div(self.nanos, NANO))
    }

    /// The value in thousandths, rounded up and saturated at `i64` (upstream
    /// `Quantity.MilliValue()`; `1E` CPUs in millis does not fit an `i64`).
    #[must_use]
    pub fn milli_value(self) -> i64 {
        saturate_i64(ceil_div(self.nanos, 1_000_000))
    }

    /// Whether the quantity is zero.
    #[must_use]
    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// The sum, capped at the largest magnitude.
    #[must_use]
    pub fn saturating_add(self, other: Self) -> Self {
        Self {
            nanos: self
                .nanos
                .saturating_add(other.nanos)
                .clamp(-MAX_NANOS, MAX_NANOS),
        }
    }

    /// The difference, capped at the largest magnitude.
    #[must_use]
    pub fn saturating_sub(self, other: Self) -> Self {
        Self {
            nanos: self
                .nanos
                .saturating_sub(other.nanos)
                .clamp(-MAX_NANOS, MAX_NANOS),
        }
    }
}

impl fmt::Display for ParsedQuantity {
    /// Whole units when exact, else nano units (`1500000000n` style is avoided for readability:
    /// `1.5` prints as `1500m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nanos;
        if n % NANO == 0 {
            write!(f, "{}", n / NANO)
        } else if n % 1_000_000 == 0 {
            write!(f, "{}m", n / 1_000_000)
        } else if n % 1_000 == 0 {
            write!(f, "{}u", n / 1_000)
        } else {
            write!(f, "{n}n")
        }
    }
}

impl FromStr for ParsedQuantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

/// A quantity string that is not a Kubernetes quantity, naming the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {quantity:?} is malformed: {kind}")]
pub struct QuantityError {
    /// The string as given.
    pub quantity: String,
    /// What is wrong with it.
    pub kind: QuantityErrorKind,
}

/// What is wrong with a malformed quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityErrorKind {
    /// Nothing but white space.
    #[error("it is empty")]
    Empty,
    /// No digit before the suffix.
    #[error("it has no digits")]
    NoDigits,
    /// A suffix that is none of the SI, binary-SI or exponent forms.
    #[error(
        "unknown suffix {0:?} (expected one of n u m k M G T P E Ki Mi Gi Ti Pi Ei, or e<exponent>)"
    )]
    UnknownSuffix(String),
    /// An `e`/`E` exponent that is not a signed integer.
    #[error("invalid exponent {0:?}")]
    InvalidExponent(String),
}

/// Parses a Kubernetes quantity.
///
/// # Errors
/// [`QuantityError`] naming the string when it does not follow the quantity grammar.
pub fn parse_quantity(s: &str) -> Result<ParsedQuantity, QuantityError> {
    let err = |kind| QuantityError {
        quantity: s.to_owned(),
        kind,
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(err(QuantityErrorKind::Empty));
    }
    let bytes = t.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };

    let mut mantissa = Mantissa::default();
    let mut digits = 0usize;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        mantissa.push_integer_digit(bytes[pos] - b'0');
        digits += 1;
        pos += 1;
    }
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            mantissa.push_fraction_digit(bytes[pos] - b'0');
            digits += 1;
            pos += 1;
        }
    }
    if digits == 0 {
        return Err(err(QuantityErrorKind::NoDigits));
    }

    let (exp10, exp2) = parse_suffix(&t[pos..]).map_err(err)?;
    let magnitude = mantissa.to_nanos(exp10, exp2);
    Ok(ParsedQuantity {
        nanos: if negative { -magnitude } else { magnitude },
    })
}

/// The decimal and binary exponents a suffix stands for.
fn parse_suffix(suffix: &str) -> Result<(i64, u32), QuantityErrorKind> {
    Ok(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
                return Err(QuantityErrorKind::UnknownSuffix(suffix.to_owned()));
            };
            let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityErrorKind::InvalidExponent(exponent.to_owned()));
            }
            // Any exponent beyond ±10^6 already saturates or rounds to 1n; clamping keeps the
            // arithmetic below in range for absurdly long exponents.
            let value = unsigned.trim_start_matches('0');
            let magnitude: i64 = if value.len() > 7 {
                10_000_000
            } else {
                value.parse().unwrap_or(0)
            };
            (
                (if exponent.starts_with('-') {
                    -magnitude
                } else {
                    magnitude
                }),
                0,
            )
        }
    })
}

/// The significant digits of a quantity, with how far they are shifted.
///
/// Digits beyond what a `u128` holds are dropped, remembering whether any was non-zero: a value
/// with that many significant digits is either capped (integer part) or only needs to know that
/// something is left for rounding up (fraction part).
#[derive(Default)]
struct Mantissa {
    digits: u128,
    /// Power of ten the digits are multiplied by.
    exp10: i64,
    /// A dropped digit was non-zero.
    sticky: bool,
}

/// Digits beyond this are dropped (10^37 leaves room for one more digit in a `u128`).
const MANTISSA_LIMIT: u128 = 10u128.pow(37);

impl Mantissa {
    fn push_integer_digit(&mut self, d: u8) {
        if self.digits >= MANTISSA_LIMIT {
            self.exp10 += 1;
            self.sticky |= d != 0;
        } else {
            self.digits = self.digits * 10 + u128::from(d);
        }
    }

    fn push_fraction_digit(&mut self, d: u8) {
        if self.digits >= MANTISSA_LIMIT {
            self.sticky |= d != 0;
        } else {
            self.digits = self.digits * 10 + u128::from(d);
            self.exp10 -= 1;
        }
    }

    /// The magnitude in nano units, rounded up and capped.
    ///
    /// Exact whenever no digit was dropped (up to 37 significant digits). Beyond that, with a
    /// binary suffix, the result may be one nano unit short.
    fn to_nanos(&self, suffix_exp10: i64, exp2: u32) -> i128 {
        if self.digits == 0 {
            return 0;
        }
        // value = (digits + tail) * 10^e * 2^exp2 nano units, with 0 <= tail < 1.
        let mut digits = self.digits;
        let mut sticky = self.sticky;
        let mut e = self.exp10 + suffix_exp10 + 9;
        let factor2 = 1u128 << exp2;
        // Digits below a nano unit only matter for rounding up: drop them (remembering whether
        // any was non-zero) until the binary factor fits.
        while e < 0 && digits.checked_mul(factor2).is_none() {
            sticky |= !digits.is_multiple_of(10);
            digits /= 10;
            e += 1;
        }
        let Some(scaled) = digits.checked_mul(factor2) else {
            return MAX_NANOS;
        };
        let magnitude = if e >= 0 {
            let Some(factor) = u32::try_from(e).ok().and_then(|e| 10u128.checked_pow(e)) else {
                return MAX_NANOS;
            };
            // A sticky tail here means more than 37 integer digits: capped either way.
            match scaled.checked_mul(factor) {
                Some(v) => v.saturating_add(u128::from(sticky)),
                None => return MAX_NANOS,
            }
        } else {
            match u32::try_from(-e).ok().and_then(|e| 10u128.checked_pow(e)) {
                Some(divisor) => {
                    let q = scaled / divisor;
                    if scaled % divisor != 0 || sticky {
                        q + 1
                    } else {
                        q
                    }
                }
                // More than 10^38 below a nano unit: rounds up to one nano unit.
                None => 1,
            }
        };
        i128::try_from(magnitude).map_or(MAX_NANOS, |m| m.min(MAX_NANOS))
    }
}

/// `ceil(a / b)` for `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    -((-a).div_euclid(b))
}

fn saturate_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn q(s: &str) -> ParsedQuantity {
        parse_quantity(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn table_of_valid_forms() {
        // (input, nanos)
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", NANO),
            ("100m", 100_000_000),
            ("1.5", 1_500_000_000),
            ("0.1", 100_000_000),
            (".5", 500_000_000),
            ("5.", 5 * NANO),
            ("1.5Gi", 1_610_612_736 * NANO),
            ("1Ki", 1024 * NANO),
            ("+1Ki", 1024 * NANO),
            ("1Mi", (1 << 20) * NANO),
            ("1Gi", (1 << 30) * NANO),
            ("1Ti", (1 << 40) * NANO),
            ("1Pi", (1 << 50) * NANO),
            ("1Ei", (1 << 60) * NANO),
            ("1e3", 1000 * NANO),
            ("1E3", 1000 * NANO),
            ("1e+3", 1000 * NANO),
            ("1e-3", 1_000_000),
            ("1.5e3", 1500 * NANO),
            ("2k", 2000 * NANO),
            ("2M", 2_000_000 * NANO),
            ("2G", 2_000_000_000 * NANO),
            ("2T", 2_000_000_000_000 * NANO),
            ("2P", 2_000_000_000_000_000 * NANO),
            ("1E", 1_000_000_000_000_000_000 * NANO),
            ("500u", 500_000),
            ("2n", 2),
            ("-1", -NANO),
            ("-100m", -100_000_000),
            ("007", 7 * NANO),
            ("0.000", 0),
            (" 250m ", 250_000_000),
            ("0.1n", 1),
            ("-0.1n", -1),
            ("1.0000000001", NANO + 1),
            ("1e-100", 1),
            ("0e5", 0),
        ];
        for &(s, nanos) in cases {
            assert_eq!(q(s).nanos(), nanos, "{s}");
        }
    }

    #[test]
    fn value_and_milli_value_round_up() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("100m").value(), 1);
        assert_eq!(q("1.5").value(), 2);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("0.5m").milli_value(), 1);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("1.5Gi").value(), 1_610_612_736);
        assert_eq!(q("1Gi").milli_value(), (1i64 << 30) * 1000);
        assert_eq!(q("-1.5").value(), -1);
        assert_eq!(q("2").milli_value(), 2000);
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("1E").milli_value(), i64::MAX);
        assert_eq!(q("8Ei").value(), i64::MAX);
        assert_eq!(q("1e100").value(), i64::MAX);
        assert_eq!(q("-1e100").value(), -i64::MAX);
        assert_eq!(
            q("99999999999999999999999999999999999999999999").value(),
            i64::MAX
        );
        assert_eq!(q("9223372036854775807").value(), i64::MAX);
        assert_eq!(q("1e99999999999999999999").value(), i64::MAX);
        assert_eq!(q("1e-99999999999999999999").nanos(), 1);
    }

    #[test]
    fn long_fractions_keep_rounding() {
        // 45 significant digits: the dropped ones still round up.
        assert_eq!(
            q("0.000000000100000000000000000000000000000000000001").nanos(),
            1
        );
        assert_eq!(
            q("1.000000000000000000000000000000000000000000000001").nanos(),
            NANO + 1
        );
        assert_eq!(
            q("1.000000000000000000000000000000000000000000000000").nanos(),
            NANO
        );
        // 21 significant digits times 2^60 does not fit a u128 unless sub-nano digits go first.
        // 2^60 * 10^-20 units = 11529215.05 nano units, rounded up.
        assert_eq!(
            q("1.00000000000000000001Ei").nanos(),
            (1i128 << 60) * NANO + 11_529_216
        );
        // 30 significant digits: sub-nano digits are dropped and still round up.
        assert_eq!(
            q("1.00000000000000000000000000001Ei").nanos(),
            (1i128 << 60) * NANO + 1
        );
        assert_eq!(q("1.50000000000000000000Ei").nanos(), (3i128 << 59) * NANO);
    }

    #[test]
    fn malformed_quantities_are_errors_naming_the_string() {
        let cases: &[(&str, QuantityErrorKind)] = &[
            ("", QuantityErrorKind::Empty),
            ("   ", QuantityErrorKind::Empty),
            ("Ki", QuantityErrorKind::NoDigits),
            (".", QuantityErrorKind::NoDigits),
            ("+", QuantityErrorKind::NoDigits),
            ("-m", QuantityErrorKind::NoDigits),
            ("abc", QuantityErrorKind::NoDigits),
            ("1.2.3", QuantityErrorKind::UnknownSuffix(".3".into())),
            ("1ki", QuantityErrorKind::UnknownSuffix("ki".into())),
            ("1KiB", QuantityErrorKind::UnknownSuffix("KiB".into())),
            ("1 Gi", QuantityErrorKind::UnknownSuffix(" Gi".into())),
            ("1mm", QuantityErrorKind::UnknownSuffix("mm".into())),
            ("1K", QuantityErrorKind::UnknownSuffix("K".into())),
            ("1e", QuantityErrorKind::InvalidExponent(String::new())),
            ("1e-", QuantityErrorKind::InvalidExponent("-".into())),
            ("1e1.5", QuantityErrorKind::InvalidExponent("1.5".into())),
            ("1E3m", QuantityErrorKind::InvalidExponent("3m".into())),
            ("--1", QuantityErrorKind::NoDigits),
            ("1_000", QuantityErrorKind::UnknownSuffix("_000".into())),
            ("nan", QuantityErrorKind::NoDigits),
            ("inf", QuantityErrorKind::NoDigits),
            ("0x10", QuantityErrorKind::UnknownSuffix("x10".into())),
        ];
        for (s, kind) in cases {
            let err = parse_quantity(s).expect_err(s);
            assert_eq!(&err.kind, kind, "{s:?}");
            assert_eq!(err.quantity, *s);
            assert!(err.to_string().contains(&format!("{s:?}")), "{err}");
        }
    }

    #[test]
    fn display_is_compact() {
        assert_eq!(q("1.5").to_string(), "1500m");
        assert_eq!(q("2Ki").to_string(), "2048");
        assert_eq!(q("3u").to_string(), "3u");
        assert_eq!(q("3n").to_string(), "3n");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_quantity(&s);
        }

        #[test]
        fn grammar_shaped_strings_never_panic(
            s in "[+-]?[0-9]{0,45}(\\.[0-9]{0,45})?([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]{1,25})?"
        ) {
            let _ = parse_quantity(&s);
        }

        #[test]
        fn integers_with_suffixes(n in -1_000_000_000i64..1_000_000_000) {
            prop_assert_eq!(q(&n.to_string()).value(), n);
            prop_assert_eq!(q(&format!("{n}m")).milli_value(), n);
            prop_assert_eq!(q(&format!("{n}k")).value(), n * 1000);
            prop_assert_eq!(q(&format!("{n}Ki")).value(), n * 1024);
            prop_assert_eq!(q(&format!("{n}Mi")).value(), n * (1 << 20));
            prop_assert_eq!(q(&format!("{n}e2")).value(), n * 100);
            prop_assert_eq!(q(&format!("{n}n")).nanos(), i128::from(n));
        }

        #[test]
        fn decimal_fractions_are_exact(int in 0u32..1_000_000, frac in 0u32..1000) {
            let s = format!("{int}.{frac:03}");
            prop_assert_eq!(q(&s).milli_value(), i64::from(int) * 1000 + i64::from(frac));
        }
    }
}
