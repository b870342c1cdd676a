//! Rate limiting for MCP servers (work in progress).
