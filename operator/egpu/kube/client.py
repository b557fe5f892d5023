"""A small async Kubernetes client speaking raw JSON over aiohttp.

The only layer that talks to the API server. Raw dicts, not generated models:
decoding thousands of pods into client models costs more CPU than the rest of
the operator (a known cost of the generated Python clients). Credentials come
from the official client's loader, so kubeconfig files, tokens, exec plugins
and in-cluster service accounts all work.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer, with the API server's Status reason and message."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        self.message = body.get("message", str(body)) if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def transient(self) -> bool:
        """Worth asking again: the server was busy, throttled us, or timed out."""
        return self.status == 429 or self.status >= 500


class TransportError(ConnectionError):
    """The API server could not be talked to, or its reply was cut or not JSON.

    Whether a write sent before the failure took effect is unknown: ask the server.
    A ConnectionError (an OSError), so callers that treat OSError as "unreachable"
    keep doing so.
    """


TRANSPORT_FAILURES = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl_context: ssl.SSLContext | bool
    headers: Mapping[str, str]

    @classmethod
    def load(cls, kubeconfig: str | None = None) -> Credentials:
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        ctx: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.verify_ssl else False
        )
        if cfg.cert_file and isinstance(ctx, ssl.SSLContext):
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        headers = {}
        token = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if token:
            prefix = cfg.api_key_prefix.get("authorization", "")
            headers["Authorization"] = f"{prefix} {token}".strip()
            if not token.lower().startswith("bearer") and not prefix:
                headers["Authorization"] = f"Bearer {token}"
        return cls(server=cfg.host.rstrip("/"), ssl_context=ctx, headers=headers)


def path_for(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{quote(namespace)}")
    parts.append(plural)
    if name:
        parts.append(quote(name))
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    def __init__(self, credentials: Credentials, connections: int = 64) -> None:
        self.credentials = credentials
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self.credentials.ssl_context, limit=self._connections
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={**self.credentials.headers, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _exchange(
        self,
        method: str,
        path: str,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        data: str | None = None,
    ) -> tuple[int, bytes]:
        """One HTTP exchange: the status and the raw body; a transport failure raises
        TransportError naming the call."""
        try:
            async with self.session.request(
                method,
                url,
                data=data,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return resp.status, await resp.read()
        except TRANSPORT_FAILURES as exc:
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Any:
        url = self.credentials.server + path
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        status, raw = await self._exchange(
            method, path, url, {"Content-Type": content_type}, timeout, data
        )
        try:
            payload: Any = json.loads(raw) if raw else None
        except ValueError:
            if status >= 400:  # a proxy's error page, say: still an answer
                raise ApiError(status, raw[:200].decode(errors="replace"), method, path) from None
            raise TransportError(f"{method} {path}: the reply is not JSON") from None
        if status >= 400:
            raise ApiError(status, payload, method, path)
        return payload

    async def get_text(self, path: str, timeout: float = 10) -> str:
        """GET a plain-text answer (a kubelet's metrics through nodes/proxy, say)."""
        url = self.credentials.server + path
        status, raw = await self._exchange("GET", path, url, {"Accept": "text/plain"}, timeout)
        text = raw.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, text[:200], "GET", path)
        return text

    async def get(self, path: str, **params: Any) -> JSON:
        result: JSON = await self.request("GET", path, params=params or None)
        return result

    async def list_all(self, path: str, page: int = 500, **params: Any) -> tuple[list[JSON], str]:
        """Paginated LIST; returns the items and the list's resourceVersion."""
        items: list[JSON] = []
        cont = ""
        while True:
            query = {**params, "limit": page}
            if cont:
                query["continue"] = cont
            result = await self.get(path, **query)
            items.extend(result.get("items") or [])
            cont = result.get("metadata", {}).get("continue", "")
            if not cont:
                return items, str(result.get("metadata", {}).get("resourceVersion", ""))

    async def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300, **params: Any
    ) -> AsyncIterator[JSON]:
        """One watch request; yields the raw events until the server closes it."""
        query = {
            **params,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        url = self.credentials.server + path + "?" + urlencode(query)
        async with self.session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout_seconds + 30, sock_read=None)
        ) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, json.loads(await resp.read() or b"{}"), "WATCH", path)
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)

    async def create(self, path: str, body: JSON) -> JSON:
        result: JSON = await self.request("POST", path, body=body)
        return result

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> JSON:
        result: JSON = await self.request("PATCH", path, body=body, content_type=content_type)
        return result

    async def delete(self, path: str, *, missing_ok: bool = True, **params: Any) -> None:
        try:
            await self.request("DELETE", path, params=params or None)
        except ApiError as exc:
            if not (missing_ok and exc.not_found):
                raise


async def gather_limited(limit: int, *aws: Any) -> list[Any]:
    """asyncio.gather with at most `limit` in flight; exceptions are returned, not raised."""
    sem = asyncio.Semaphore(limit)

    async def run(aw: Any) -> Any:
        async with sem:
            return await aw

    return list(await asyncio.gather(*(run(a) for a in aws), return_exceptions=True))
