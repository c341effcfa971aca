"""Who may call a project's fine-tuned models: checkpoint permissions (OpenAI's
`/v1/fine_tuning/checkpoints/{checkpoint}/permissions`) and deleting a model (`DELETE /v1/models/{model}`).

A permission grants another hone project the checkpoint's model: that project's keys may then call
`ft:...:ckpt-step-N` in chat and completions. Only the project that trained the checkpoint grants,
lists and revokes; deleting the model revokes its grants too.
"""

from __future__ import annotations

from hone.errors import ForbiddenError, NotFoundError, RequestError
from hone.jobs.store import Store


def own_checkpoint(store: Store, project_id: str, checkpoint: str) -> dict:
    """The project's checkpoint model named `checkpoint`; 404 for another project's, as for a missing one."""
    row = next((r for r in store.checkpoint_models(project_id) if r["fine_tuned_model"] == checkpoint), None)
    if row is None:
        raise NotFoundError(f"No fine-tuned model checkpoint {checkpoint!r} in this project",
                            param="fine_tuned_model_checkpoint", code="not_found")
    return row


def grant_checkpoint(store: Store, project_id: str, checkpoint: str, project_ids) -> list[dict]:
    """Grant each of `project_ids` the checkpoint's model; the permission rows (an existing grant is kept)."""
    own_checkpoint(store, project_id, checkpoint)
    if not isinstance(project_ids, list) or not project_ids or not all(isinstance(p, str) for p in project_ids):
        raise RequestError("project_ids must be a non-empty list of project ids", param="project_ids")
    for index, grantee in enumerate(project_ids):
        if grantee == project_id:
            raise RequestError(f"project_ids[{index}] is this checkpoint's own project, which calls it already",
                               param=f"project_ids[{index}]")
        if not store.project_exists(grantee):
            raise RequestError(f"project_ids[{index}]: no project {grantee!r} on this service",
                               param=f"project_ids[{index}]", code="project_not_found")
    return [store.add_permission(project_id, checkpoint, grantee) for grantee in project_ids]


def revoke_checkpoint(store: Store, project_id: str, checkpoint: str, permission_id: str) -> None:
    own_checkpoint(store, project_id, checkpoint)
    if not store.delete_permission(checkpoint, permission_id):
        raise NotFoundError(f"No permission {permission_id!r} on checkpoint {checkpoint!r}",
                            param="permission_id", code="not_found")


def delete_model(store: Store, project_id: str, name: str, bases: set[str]) -> None:
    """Delete one of the project's fine-tuned or checkpoint models: it is no longer listed or callable (its
    job and files stay). `bases`, the models tuned from, are refused with a 403."""
    owned = {r["fine_tuned_model"] for r in store.fine_tuned_models(project_id)} | \
        {r["fine_tuned_model"] for r in store.checkpoint_models(project_id)}
    if name in owned:
        store.delete_model(project_id, name)
        return
    if name in bases:
        raise ForbiddenError(f"{name!r} is a base model; only this project's fine-tuned models can be deleted",
                             param="model", code="model_not_deletable")
    raise NotFoundError(f"No fine-tuned model {name!r} in this project", param="model", code="model_not_found")
