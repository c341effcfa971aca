"""Inference for the service's projects: their API keys, and their fine-tuned models callable at once.

`hone service` runs hone's inference app (`hone.serve.app.create_app`) with these two in place of
the key file: a project's key (from the jobs store) may call the base model, the project's own
fine-tuned models and the bases they were tuned from; another project's model answers 404, as one
that does not exist. A finished job's adapter is registered on its base's engine on its first
request (that engine loads then if it is not the served base), so no restart is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hone.errors import ModelError
from hone.infer.registry import unknown_model
from hone.jobs.store import Store
from hone.models.artifact import read_manifest
from hone.serve.auth import bearer_token
from hone.serve.errors import ApiError
from hone.serve.protocol import ModelCard

NEW_KEY_HINT = "create one with `hone service --new-key PROJECT`"


@dataclass
class ProjectKey:
    """The key of a request: its project, and the models that project may call."""

    project: str
    base: str
    store: Store
    _models: dict | None = field(default=None, repr=False)
    _checkpoints: set | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.project

    def models(self) -> dict[str, dict]:
        """The project's fine-tuned models (name → store row), read once per request."""
        if self._models is None:
            self._models = {r["fine_tuned_model"]: r for r in self.store.fine_tuned_models(self.project)}
        return self._models

    def bases(self) -> set[str]:
        """The bases the project's models were tuned from, callable by their names too."""
        return {row["model"] for row in self.models().values()}

    def checkpoints(self) -> set[str]:
        """The checkpoint models the project may call (`ft:...:ckpt-step-N`): its own, and those granted to it."""
        if self._checkpoints is None:
            self._checkpoints = {r["fine_tuned_model"] for r in self.store.checkpoint_models(self.project)} | \
                {r["fine_tuned_model"] for r in self.store.checkpoint_models(self.project, granted=True)}
        return self._checkpoints

    def allows(self, model: str) -> bool:
        return model == self.base or model in self.models() or model in self.bases() or model in self.checkpoints()


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
    """Finished jobs' models and the bases they were tuned from: listed by `/v1/models`, located on their
    base's engine, and registered in it on first use."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def cards(self, key: ProjectKey | None) -> list:
        rows = list(key.models().values()) if key is not None else self.store.fine_tuned_models()
        cards = [ModelCard(id=r["fine_tuned_model"], created=r["finished_at"] or 0, owned_by=r["project_id"],
                           parent=r["model"], root=r["model"]) for r in rows]
        bases = dict.fromkeys(r["model"] for r in rows if r["model"] != (key.base if key else None))
        return [ModelCard(id=base, created=0, root=base) for base in bases] + cards

    def locate(self, name: str, served) -> tuple[str, str | None]:
        """(the base spec, the adapter name or None) for a finished model or a base one was tuned from;
        a model tuned from the served base under another name (same weights' hash) runs on `served`."""
        rows = self.store.fine_tuned_models()
        row = self._row(name)
        if row is None:
            if any(r["model"] == name for r in rows):
                return name, None
            raise unknown_model(name)
        if not row["adapter_dir"]:
            raise unknown_model(name)
        trained_on = read_manifest(row["adapter_dir"]).get("base_model", {}).get("sha256")
        same = row["model"] == served.id or bool(trained_on and served.sha256 and trained_on == served.sha256)
        return (served.id if same else row["model"]), name

    def register(self, engine, name: str) -> None:
        """Make the finished model `name` callable in `engine`, its base's engine."""
        row = self._row(name)
        if row is None or not row["adapter_dir"]:
            raise unknown_model(name)
        try:
            engine.register(name, row["adapter_dir"], replace=True)
        except ModelError as error:
            if "not on the served base" in error.what:
                raise ApiError(400, f"the model {name!r} was fine-tuned from {row['model']!r}, but its adapter "
                               f"does not fit {engine.source.id!r}: {error.what}", param="model",
                               code="model_base_mismatch") from None
            raise

    def _row(self, name: str) -> dict | None:
        """The finished or checkpoint model `name` (any project's: the key was checked before)."""
        return next((r for r in self.store.fine_tuned_models() + self.store.checkpoint_models()
                     if r["fine_tuned_model"] == name), None)
