//! A fast non-cryptographic hasher for the compiled policy's lookup tables.
//!
//! The tables are built from the policy (trusted input) and only read with request data, so
//! a request cannot add keys and flood a bucket: SipHash's protection against chosen keys buys
//! nothing here, and its cost would dominate a decision. This is the multiply-rotate scheme of
//! rustc's `FxHasher`, eight bytes at a time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` using [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Assembled byte by byte: a variable-length copy would be a call to `memcpy`.
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |word, &b| (word << 8) | u64::from(b));
            self.add(word ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A multiply only carries low input bits upwards, and the table takes its bucket from
        // the low bits and its tag from the top ones; a final avalanche (MurmurHash3's
        // `fmix64`) makes both depend on every input byte.
        let mut x = self.hash;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn distinguishes_lengths_and_contents() {
        let build = BuildHasherDefault::<FxHasher>::default();
        let a = build.hash_one("weather.get");
        assert_eq!(a, build.hash_one("weather.get"));
        assert_ne!(a, build.hash_one("weather.got"));
        assert_ne!(build.hash_one("a"), build.hash_one("a\0"));
    }
}
