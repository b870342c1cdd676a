//! Observability for MCP servers: Prometheus metric families, a tower layer, logs and traces.

#![forbid(unsafe_code)]
