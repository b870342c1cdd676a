//! Test helpers for the mcp-auth workspace (work in progress).
