//! A HyperLogLog sketch: distinct counts in fixed memory (`2^precision` bytes).

use std::sync::atomic::{AtomicU8, Ordering};

/// Smallest and largest supported precision (number of index bits).
pub(crate) const MIN_PRECISION: u8 = 4;
pub(crate) const MAX_PRECISION: u8 = 16;

/// The register a hash goes to and the rank it carries, for a sketch of `2^precision`
/// registers (`precision` in 4..=16).
fn register_of(precision: u8, hash: u64) -> (usize, u8) {
    let p = u32::from(precision.clamp(MIN_PRECISION, MAX_PRECISION));
    // The top `p` bits choose the register; the rank is the position of the first set bit in
    // the rest, capped so that an all-zero remainder still gets a finite rank.
    let index = usize::try_from(hash >> (64 - p)).unwrap_or(0);
    let rest = hash << p;
    let max_rank = 64 - p + 1;
    let rank = (rest.leading_zeros() + 1).min(max_rank);
    (index, u8::try_from(rank).unwrap_or(u8::MAX))
}

/// [`HyperLogLog::insert_hash`] on registers kept as atomics, so that threads add items
/// without a lock. A register is only written when the rank is higher than what it holds.
pub(crate) fn insert_atomic(registers: &[AtomicU8], precision: u8, hash: u64) {
    let (index, rank) = register_of(precision, hash);
    if let Some(register) = registers.get(index)
        && rank > register.load(Ordering::Relaxed)
    {
        register.fetch_max(rank, Ordering::Relaxed);
    }
}

/// A HyperLogLog distinct-count sketch over 64-bit hashes.
///
/// The relative standard error of [`HyperLogLog::estimate`] is about `1.04 / sqrt(2^p)`:
/// 3.25 % at the default precision 10 (1 KiB per sketch). Small counts use linear counting
/// and are close to exact; an empty sketch estimates exactly 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HyperLogLog {
    precision: u8,
    registers: Box<[u8]>,
}

impl HyperLogLog {
    /// A sketch with `2^precision` one-byte registers. `precision` is clamped to 4..=16.
    pub(crate) fn new(precision: u8) -> Self {
        let precision = precision.clamp(MIN_PRECISION, MAX_PRECISION);
        Self {
            precision,
            registers: vec![0u8; 1usize << precision].into_boxed_slice(),
        }
    }

    /// Bytes of register memory this sketch holds.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.registers.len()
    }

    /// Register-wise maximum with registers kept as atomics (a sketch that is written
    /// concurrently, see [`insert_atomic`]).
    pub(crate) fn merge_atomic(&mut self, other: &[AtomicU8]) {
        for (a, b) in self.registers.iter_mut().zip(other) {
            let b = b.load(Ordering::Relaxed);
            if b > *a {
                *a = b;
            }
        }
    }

    /// Resets every register to zero.
    pub(crate) fn clear(&mut self) {
        self.registers.fill(0);
    }

    /// The estimated number of distinct items inserted.
    pub(crate) fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let mut sum = 0.0_f64;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += 2f64.powi(-i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            // Linear counting is much more accurate for small cardinalities.
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, RandomState};

    fn registers(precision: u8) -> Vec<AtomicU8> {
        (0..1usize << precision).map(|_| AtomicU8::new(0)).collect()
    }

    fn sketch_of(precision: u8, registers: &[AtomicU8]) -> HyperLogLog {
        let mut hll = HyperLogLog::new(precision);
        hll.merge_atomic(registers);
        hll
    }

    fn filled(precision: u8, n: u64) -> HyperLogLog {
        let hasher = RandomState::new();
        let r = registers(precision);
        for i in 0..n {
            insert_atomic(&r, precision, hasher.hash_one(i));
        }
        sketch_of(precision, &r)
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(HyperLogLog::new(10).estimate(), 0.0);
    }

    #[test]
    fn precision_is_clamped() {
        assert_eq!(HyperLogLog::new(0).memory_bytes(), 16);
        assert_eq!(HyperLogLog::new(40).memory_bytes(), 1 << 16);
    }

    #[test]
    fn estimates_within_five_standard_errors() {
        for &n in &[1u64, 10, 100, 1_000, 10_000, 100_000] {
            let est = filled(10, n).estimate();
            let err = (est - n as f64).abs() / n as f64;
            // 5 sigma of 3.25 %: a failure here is a bug, not bad luck.
            assert!(err < 0.17, "n={n} estimate={est}");
        }
    }

    #[test]
    fn duplicates_do_not_count() {
        let hasher = RandomState::new();
        let r = registers(10);
        for _ in 0..1000 {
            insert_atomic(&r, 10, hasher.hash_one("same-user"));
        }
        assert!((sketch_of(10, &r).estimate() - 1.0).abs() < 0.01);
    }

    #[test]
    fn merge_is_union() {
        let hasher = RandomState::new();
        let (a, b) = (registers(10), registers(10));
        for i in 0..500u64 {
            insert_atomic(&a, 10, hasher.hash_one(i));
            insert_atomic(&b, 10, hasher.hash_one(i + 250));
        }
        let mut union = sketch_of(10, &a);
        union.merge_atomic(&b);
        let est = union.estimate();
        assert!((est - 750.0).abs() / 750.0 < 0.17, "{est}");
        union.clear();
        assert_eq!(union.estimate(), 0.0);
    }

    #[test]
    fn concurrent_inserts_keep_the_highest_rank() {
        let hasher = RandomState::new();
        let r = registers(8);
        let hashes: Vec<u64> = (0..20_000u64).map(|i| hasher.hash_one(i)).collect();
        std::thread::scope(|s| {
            for part in hashes.chunks(5_000) {
                let r = &r;
                s.spawn(move || part.iter().for_each(|h| insert_atomic(r, 8, *h)));
            }
        });
        let serial = registers(8);
        hashes.iter().for_each(|h| insert_atomic(&serial, 8, *h));
        assert_eq!(sketch_of(8, &r), sketch_of(8, &serial));
    }
}
