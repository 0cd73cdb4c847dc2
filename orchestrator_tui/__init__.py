"""orchestrator-tui: supervise a pool of OpenCode sessions from an MCP server and a Textual dashboard."""

__version__ = "0.1.0"

#: The OpenCode release every part of the package is built and tested against.
PINNED_OPENCODE_VERSION = "1.18.33"
