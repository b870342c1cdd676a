//! Criterion benches of the authentication hot paths (work in progress).

fn main() {}
