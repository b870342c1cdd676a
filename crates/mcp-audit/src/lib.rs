//! # mcp-audit: what happened, durably
//!
//! Audit events for MCP servers. Work in progress.
