"""/healthz, /readyz and /leaderz of the operator.

/healthz (liveness): the process works; it fails once a loop is crash-looping, so the
kubelet restarts it. /readyz (readiness): alive and the caches are synced, on the leader
and on a standby alike: a standby is ready to take over at once, and a Deployment whose
standbys were never Ready would never finish a rollout (`helm install --wait`), nor let
a PodDisruptionBudget evict anything. /leaderz: ready and leading (tools that look for
the leader; the Lease names it too).
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
        return True, "leading" if self.runtime.leading.is_set() else "standby"

    def leader(self) -> tuple[bool, str]:
        ready, why = self.ready()
        return ready and why == "leading", why


async def serve_health(health: Health, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        ok, why = health.alive()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(_: web.Request) -> web.Response:
        ok, why = health.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def leaderz(_: web.Request) -> web.Response:
        ok, why = health.leader()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/leaderz", leaderz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
