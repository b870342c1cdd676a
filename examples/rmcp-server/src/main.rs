//! An rmcp Streamable HTTP server whose tool reads the caller's `Principal` (work in progress).

fn main() {}
