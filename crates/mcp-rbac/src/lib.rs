//! Role-based access control for MCP servers (work in progress).
