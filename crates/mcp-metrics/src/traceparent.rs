//! W3C Trace Context `traceparent` parsing and formatting (no OpenTelemetry dependency).

use std::fmt;
use std::str::FromStr;

/// A parsed W3C `traceparent` value: `00-<trace-id>-<parent-id>-<flags>`.
///
/// Parsing follows the W3C Trace Context rules: lower-case hex only, the all-zero trace id
/// and parent id are invalid, version `ff` is invalid, and a future version may carry more
/// fields after a `-` (they are ignored).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The 8-byte id of the caller's span.
    pub parent_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

/// Why a `traceparent` value was rejected. The value itself is never included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Wrong length or missing `-` separators.
    #[error("traceparent has the wrong shape")]
    Shape,
    /// A field is not lower-case hex.
    #[error("traceparent field is not lower-case hex")]
    Hex,
    /// Version `ff`, or version `00` with extra data.
    #[error("traceparent version is invalid")]
    Version,
    /// The trace id or the parent id is all zeros.
    #[error("traceparent trace id or parent id is all zeros")]
    ZeroId,
}

fn hex_nibble(b: u8) -> Result<u8, TraceParentError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(TraceParentError::Hex),
    }
}

fn decode_hex<const N: usize>(s: &[u8]) -> Result<[u8; N], TraceParentError> {
    if s.len() != N * 2 {
        return Err(TraceParentError::Shape);
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [hi, lo] = pair else {
            return Err(TraceParentError::Shape);
        };
        *byte = (hex_nibble(*hi)? << 4) | hex_nibble(*lo)?;
    }
    Ok(out)
}

impl TraceParent {
    /// The length of a version-00 value.
    pub const LEN: usize = 55;

    /// Parses a `traceparent` header or `_meta.traceparent` value (surrounding spaces allowed).
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let bytes = value.trim_matches([' ', '\t']).as_bytes();
        if bytes.len() < Self::LEN {
            return Err(TraceParentError::Shape);
        }
        let (head, extra) = bytes.split_at(Self::LEN);
        if head.get(2) != Some(&b'-') || head.get(35) != Some(&b'-') || head.get(52) != Some(&b'-')
        {
            return Err(TraceParentError::Shape);
        }
        let version = decode_hex::<1>(head.get(0..2).ok_or(TraceParentError::Shape)?)?[0];
        if version == 0xff {
            return Err(TraceParentError::Version);
        }
        let trace_id = decode_hex::<16>(head.get(3..35).ok_or(TraceParentError::Shape)?)?;
        let parent_id = decode_hex::<8>(head.get(36..52).ok_or(TraceParentError::Shape)?)?;
        let flags = decode_hex::<1>(head.get(53..55).ok_or(TraceParentError::Shape)?)?[0];
        if !extra.is_empty() {
            if version == 0 {
                return Err(TraceParentError::Version);
            }
            if extra.first() != Some(&b'-') {
                return Err(TraceParentError::Shape);
            }
        }
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lower-case hex digits (for log correlation).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TraceParent {
    /// Always the version-00 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            tp.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(VALID.parse::<TraceParent>(), Ok(tp));
        assert_eq!(TraceParent::parse(&format!("  {VALID}\t")), Ok(tp));
    }

    #[test]
    fn future_versions_may_carry_more_fields() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-ever";
        let tp = TraceParent::parse(future).unwrap();
        assert!(!tp.sampled());
        assert_eq!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x"),
            Err(TraceParentError::Shape)
        );
    }

    #[test]
    fn rejects_invalid_values() {
        let cases = [
            ("", TraceParentError::Shape),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                TraceParentError::Shape,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Shape,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                TraceParentError::Hex,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                TraceParentError::Hex,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                TraceParentError::Version,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                TraceParentError::Version,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                TraceParentError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                TraceParentError::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                TraceParentError::Hex,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é1",
                TraceParentError::Hex,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(TraceParent::parse(value), Err(want), "{value:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn near_valid_strings_never_panic(s in "[0-9a-fA-F-]{50,60}") {
            let _ = TraceParent::parse(&s);
        }

        #[test]
        fn valid_values_round_trip(trace in any::<[u8; 16]>(), parent in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(trace != [0; 16] && parent != [0; 8]);
            let tp = TraceParent { trace_id: trace, parent_id: parent, flags };
            prop_assert_eq!(TraceParent::parse(&tp.to_string()), Ok(tp));
        }
    }
}
