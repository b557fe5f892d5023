"""/healthz and /readyz of the operator.

/healthz (liveness): the process works; it fails once a loop is crash-looping, so the
kubelet restarts it. /readyz (readiness): the caches are synced and this replica is
the leader; standbys are alive but not ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from egpu.controllers.runtime import Runtime


@dataclass
class Health:
    runtime: Runtime | None = None

    def alive(self) -> tuple[bool, str]:
        if self.runtime is None:
            return True, "starting"
        looping = self.runtime.crash_looping()
        if looping:
            return False, f"crash-looping: {', '.join(looping)}"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        alive, why = self.alive()
        if not alive:
            return False, why
        if self.runtime is None or not self.runtime.synced:
            return False, "caches not synced yet"
        if not self.runtime.leading.is_set():
            return False, "standby: another replica leads"
        return True, "leading"


async def serve_health(health: Health, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        ok, why = health.alive()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = health.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
