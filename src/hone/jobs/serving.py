"""Inference for the service's projects: their API keys, and their fine-tuned models callable at once.

`hone service` runs hone's inference app (`hone.serve.app.create_app`) with these two in place of
the key file: a project's key (from the jobs store) may call the base model and the project's own
fine-tuned models; another project's model answers 404, as one that does not exist. A finished
job's adapter is registered in the engine on its first request, so no restart is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hone.errors import ModelError
from hone.infer.registry import unknown_model
from hone.jobs.store import Store
from hone.serve.auth import bearer_token
from hone.serve.errors import ApiError

NEW_KEY_HINT = "create one with `hone service --new-key PROJECT`"


@dataclass
class ProjectKey:
    """The key of a request: its project, and the models that project may call."""

    project: str
    base: str
    store: Store
    _models: dict | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.project

    def models(self) -> dict[str, dict]:
        """The project's fine-tuned models (name → store row), read once per request."""
        if self._models is None:
            self._models = {r["fine_tuned_model"]: r for r in self.store.fine_tuned_models(self.project)}
        return self._models

    def allows(self, model: str) -> bool:
        return model == self.base or model in self.models()


class ProjectAuthenticator:
    """`Authorization: Bearer sk-hone-...` checked against the store's project keys."""

    def __init__(self, store: Store, base: str) -> None:
        self.store, self.base = store, base

    def check(self, authorization: str | None, *, model: str | None = None, admin: bool = False) -> ProjectKey:
        project = self.store.project_for_key(bearer_token(authorization, NEW_KEY_HINT))
        if project is None:
            raise ApiError(401, "incorrect API key provided", code="invalid_api_key", type="authentication_error")
        if admin:
            raise ApiError(403, "the service registers fine-tuned models itself; it has no admin endpoints "
                           "(use `hone serve` with an admin key for those)", code="admin_disabled",
                           type="permission_error")
        key = ProjectKey(project, self.base, self.store)
        if model is not None and not key.allows(model):
            raise unknown_model(model)  # another project's model is as invisible as a missing one
        return key


class FineTunedCatalog:
    """Finished jobs' models: listed by `/v1/models`, registered in the engine on first use."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def cards(self, key: ProjectKey | None) -> list:
        from hone.serve.protocol import ModelCard

        rows = key.models().values() if key is not None else self.store.fine_tuned_models()
        return [ModelCard(id=r["fine_tuned_model"], created=r["finished_at"] or 0, owned_by=r["project_id"],
                          parent=r["model"], root=r["model"]) for r in rows]

    def register(self, engine, name: str) -> None:
        """Make `name` callable in `engine`; 404 if no finished job made it, 400 if it needs another base."""
        from hone.models.artifact import read_manifest

        row = next((r for r in self.store.fine_tuned_models() if r["fine_tuned_model"] == name), None)
        if row is None or not row["adapter_dir"]:
            raise unknown_model(name)
        base = engine.source
        trained_on = read_manifest(row["adapter_dir"]).get("base_model", {}).get("sha256")
        same_hash = bool(trained_on and base.sha256 and trained_on == base.sha256)
        if row["model"] != base.id and not same_hash:
            raise _other_base(name, row["model"], base.id)
        try:
            engine.register(name, row["adapter_dir"], replace=True)
        except ModelError as error:
            if "not on the served base" in error.what:
                raise _other_base(name, row["model"], base.id) from None
            raise


def _other_base(name: str, trained: str, served: str) -> ApiError:
    return ApiError(400, f"the model {name!r} was fine-tuned from {trained!r}, but this service runs {served!r}; "
                    f"start `hone service --model {trained}` (or `hone serve`) to call it", param="model",
                    code="model_base_mismatch")
