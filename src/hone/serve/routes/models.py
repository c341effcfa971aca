"""GET /v1/models (the base, and each adapter with `parent` = base) and GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from hone.infer.registry import unknown_model
from hone.serve import protocol
from hone.serve.state import state_of

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request):
    state = state_of(request)
    return protocol.ModelList(data=_cards(state, state.authorize(request))).model_dump()


@router.get("/v1/models/{name:path}")
async def get_model(name: str, request: Request):
    state = state_of(request)
    card = next((card for card in _cards(state, state.authorize(request, name)) if card.id == name), None)
    if card is None:
        raise unknown_model(name)
    return card.model_dump()


def _cards(state, key) -> list:
    """The served base, each adapter on it (`parent` = base) and the catalog's models and their bases."""
    base = state.base_name
    cards = [protocol.ModelCard(id=base, created=protocol.now(), root=base)]
    for info in list(state.engine.registry.adapters.values()):
        cards.append(protocol.ModelCard(id=info.name, created=int(info.created), parent=base, root=base))
    if state.catalog is not None:  # fine-tuned models not yet called since the server started
        known = {card.id for card in cards}
        cards += [card for card in state.catalog.cards(key) if card.id not in known]
    if key is not None:
        cards = [card for card in cards if key.allows(card.id)]
    return cards


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request):
    """Prometheus text. Series that name models appear only as `metrics_models` allows (an admin key by
    default); without them the counts of the base and of the adapters are given together."""
    state = state_of(request)
    return PlainTextResponse(state.metrics.render(per_model=_per_model(state, request)),
                             media_type="text/plain; version=0.0.4")


def _per_model(state, request: Request) -> bool:
    mode = state.settings.metrics_models
    if mode != "admin" or request.headers.get("authorization") is None:
        return mode == "public"
    state.authorize(request, admin=True)  # a key given must be an admin key: 401 or 403 otherwise
    return True
