//! Criterion benches for the metric families and the tower layer.

fn main() {}
