"""POST /v1/feedback: a rating and/or a corrected answer for a recent response id."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hone.serve import protocol
from hone.serve.state import state_of
from hone.serve.errors import ApiError

router = APIRouter()


@router.post("/v1/feedback")
async def feedback(body: protocol.Feedback, request: Request):
    state = state_of(request)
    key = state.authorize(request)
    exchange = state.memory.get(body.response_id)
    if exchange is None or not _visible(exchange, key):  # another project's response is as unknown as none
        raise ApiError(404, f"no recent response has id {body.response_id!r} (the server keeps the last "
                       f"{state.settings.feedback_window})", param="response_id", code="response_not_found")
    if body.choice >= len(exchange["answers"]):
        raise ApiError(400, f"response {body.response_id} has {len(exchange['answers'])} choices",
                       param="choice", code="invalid_value")
    record = {"response_id": body.response_id, "model": exchange["model"], "project": exchange["project"],
              "rating": body.rating,
              "corrected": body.corrected, "comment": body.comment, "answer": exchange["answers"][body.choice]}
    if "messages" in exchange:
        record["messages"] = exchange["messages"]
    else:
        record["prompt"] = exchange["prompts"][body.choice // exchange["n"]]
    state.feedback.append(record)
    return {"id": body.response_id, "object": "feedback", "recorded": True}


def _visible(exchange: dict, key) -> bool:
    """The key's project made the exchange and the key may use its model (an open server: any key)."""
    return key is None or (exchange["project"] == key.project and key.allows(exchange["model"]))
