// orchestrator-tui's plugin for the managed `opencode serve` (listed under "plugin" in the
// OPENCODE_CONFIG_CONTENT that orchestrator_tui/opencode/process.py gives the server).
//
// OpenCode 1.18.33 reads OPENCODE_SERVER_PASSWORD once, before it listens: its basic-auth
// middleware keeps the value it read when the server was built, and its own SDK clients use a
// copy taken when the process started. Every process it spawns later (bash and PTY sessions,
// MCP servers, language servers, formatters) gets a copy of `process.env`. Plugins are loaded
// when a directory's instance boots, before any of those exist, so removing the password here
// keeps it out of everything the sessions run, while the server goes on requiring it.
//
// This is not a wall: a process of the same user can still read the server's initial
// environment in /proc/<pid>/environ, or the pool's server.json (see the README).

const SECRETS = ["OPENCODE_SERVER_PASSWORD"]

function forget() {
  for (const name of SECRETS) delete process.env[name]
}

forget() // on import: nothing of this instance has been spawned yet

export const OrchestratorTuiEnvGuard = async () => {
  forget()
  return {}
}
