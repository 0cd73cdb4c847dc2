"""A minimal front end of a shared pool, run as its own process by tests/test_shared_pool.py.

It joins the pool named by the environment (``ORCHESTRATOR_TUI_STATE_DIR``), acquires the
pool's OpenCode server exactly as the dashboard and the MCP worker do (attach or start),
prints one JSON line ``{"pid": ..., "url": ...}``, then follows commands on stdin:
``acquire`` (print the server again, recovering it if it died), ``quit`` (leave the pool).
EOF on stdin leaves too.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from orchestrator_tui.pool.discovery import Membership
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Registry, pool_name
from orchestrator_tui.pool.service import PoolService, ServerSpec


async def main(cwd: Path) -> None:
    registry = Registry.for_pool(pool_name())
    service = PoolService(ServerSpec(cwd=cwd), membership=Membership.join(registry, "agent", "pool-member"))
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                snapshot = await service.acquire()
                print(json.dumps({"pid": snapshot.pid, "url": snapshot.base_url, "mode": snapshot.mode}), flush=True)
            except ServerUnavailable as exc:
                print(json.dumps({"error": str(exc)}), flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() != "acquire":
                break
    finally:
        await service.close()
        registry.close()
        print(json.dumps({"closed": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
