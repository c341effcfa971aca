"""Admin endpoints (admin API key only): register and unregister adapters at runtime."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from hone.serve import protocol
from hone.serve.state import state_of

router = APIRouter()


@router.post("/admin/adapters")
async def register_adapter(body: protocol.RegisterAdapter, request: Request):
    state = state_of(request)
    state.authorize(request, admin=True)
    # reading the artifact and waiting for the engine's lock happen off the event loop
    info = await asyncio.to_thread(state.engine.register, body.name, body.path, replace=body.replace)
    return {"id": info.name, "object": "model", "parent": state.base_name, "path": str(info.path)}


@router.delete("/admin/adapters/{name}")
async def unregister_adapter(name: str, request: Request):
    state = state_of(request)
    state.authorize(request, admin=True)
    await asyncio.to_thread(state.engine.unregister, name)
    return {"id": name, "object": "model", "deleted": True}


@router.get("/admin/adapters")
async def adapter_cache(request: Request):
    state = state_of(request)
    state.authorize(request, admin=True)
    registry = state.engine.registry
    return {"registered": sorted(registry.adapters), "loaded": list(registry.loaded),
            "hits": registry.stats.hits, "misses": registry.stats.misses, "evictions": registry.stats.evictions}
