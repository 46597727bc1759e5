"""The model registry in the tracking database (same engines and transactions as the tracking store, whose
runs the gates read). Every change writes its event row in the same transaction."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import AlreadyExists, GateFailed, InvalidArgument, InvalidState, NotFound
from modelyard.schemas.registry import (
    GateCheck,
    GatePolicy,
    ModelVersion,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    RegistryEvent,
    Stage,
    StageTransition,
    VersionStatus,
)
from modelyard.store import gates
from modelyard.store import validation as v
from modelyard.store.model_registry import (
    ModelRegistryStore,
    parse_version,
    validate_alias,
    validate_model_name,
)
from modelyard.store.registry_filter import Clause, parse_registry_filter
from modelyard.store.sql.attached import AttachedStore
from modelyard.store.sql.store import now_ms
from modelyard.store.sql.tables import (
    model_aliases,
    model_version_tags,
    model_versions,
    registered_model_tags,
    registered_models,
    registry_events,
    stage_transitions,
)

MAX_RESULTS = 10_000


def _token(offset: int) -> str | None:
    return base64.urlsafe_b64encode(str(offset).encode()).decode() if offset else None


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except Exception:
        raise InvalidArgument(
            f"Invalid page token {token!r}: pass back the next_page_token you were given."
        ) from None


def _page_size(max_results: int) -> int:
    if not 1 <= int(max_results) <= MAX_RESULTS:
        raise InvalidArgument(f"max_results must be between 1 and {MAX_RESULTS}, got {max_results}.")
    return int(max_results)


class SqlModelRegistryStore(AttachedStore, ModelRegistryStore):
    # reading rows ----------------------------------------------------------------------------------------
    def _model_row(self, conn: Connection, name: str, lock: bool = False) -> Any:
        query = select(registered_models).where(registered_models.c.name == name)
        if lock and conn.dialect.name == "postgresql":
            query = (
                query.with_for_update()
            )  # serialises version numbering per model (SQLite: BEGIN IMMEDIATE)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No registered model named {name!r}. See them with: modelyard models list")
        return row

    def _version_row(self, conn: Connection, name: str, version: int) -> Any:
        row = conn.execute(
            select(model_versions).where(model_versions.c.name == name, model_versions.c.version == version)
        ).first()
        if row is None:
            self._model_row(conn, name)
            raise NotFound(f"Model {name!r} has no version {version}.")
        return row

    def _versions(self, conn: Connection, rows: Sequence[Any]) -> list[ModelVersion]:
        keys = {(r.name, r.version) for r in rows}
        names = {r.name for r in rows}
        tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        if names:
            for t in conn.execute(select(model_version_tags).where(model_version_tags.c.name.in_(names))):
                if (t.name, t.version) in tags:
                    tags[(t.name, t.version)][t.key] = t.value
            for a in conn.execute(
                select(model_aliases).where(model_aliases.c.name.in_(names)).order_by(model_aliases.c.alias)
            ):
                if (a.name, a.version) in aliases:
                    aliases[(a.name, a.version)].append(a.alias)
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                creation_time=r.creation_time,
                last_updated_time=r.last_updated_time,
                description=r.description or "",
                source=r.source,
                run_id=r.run_id,
                status=VersionStatus(r.status),
                stage=Stage(r.stage),
                tags=tags[(r.name, r.version)],
                aliases=aliases[(r.name, r.version)],
                signature=json.loads(r.signature) if r.signature else None,
                created_by=r.created_by,
            )
            for r in rows
        ]

    def _models(self, conn: Connection, rows: Sequence[Any]) -> list[RegisteredModel]:
        names = [r.name for r in rows]
        tags: dict[str, dict[str, str]] = {n: {} for n in names}
        aliases: dict[str, dict[str, int]] = {n: {} for n in names}
        latest: dict[str, list[ModelVersion]] = {n: [] for n in names}
        if names:
            for t in conn.execute(
                select(registered_model_tags).where(registered_model_tags.c.name.in_(names))
            ):
                tags[t.name][t.key] = t.value
            for a in conn.execute(select(model_aliases).where(model_aliases.c.name.in_(names))):
                aliases[a.name][a.alias] = a.version
            newest = (
                select(
                    model_versions.c.name,
                    model_versions.c.stage,
                    func.max(model_versions.c.version).label("v"),
                )
                .where(model_versions.c.name.in_(names))
                .group_by(model_versions.c.name, model_versions.c.stage)
                .subquery()
            )
            version_rows = conn.execute(
                select(model_versions)
                .join(
                    newest,
                    and_(model_versions.c.name == newest.c.name, model_versions.c.version == newest.c.v),
                )
                .order_by(model_versions.c.version)
            ).all()
            for mv in self._versions(conn, version_rows):
                latest[mv.name].append(mv)
        return [
            RegisteredModel(
                name=r.name,
                creation_time=r.creation_time,
                last_updated_time=r.last_updated_time,
                description=r.description or "",
                tags=tags[r.name],
                aliases=dict(sorted(aliases[r.name].items())),
                latest_versions=latest[r.name],
            )
            for r in rows
        ]

    def _event(
        self,
        conn: Connection,
        type_: str,
        name: str | None,
        version: int | None = None,
        user: str | None = None,
        **payload: Any,
    ) -> None:
        conn.execute(
            insert(registry_events).values(
                time=now_ms(),
                type=type_,
                name=name,
                version=version,
                user=user,
                payload=json.dumps(payload, default=str),
            )
        )

    def _touch(self, conn: Connection, name: str, version: int | None = None) -> None:
        now = now_ms()
        conn.execute(
            update(registered_models).where(registered_models.c.name == name).values(last_updated_time=now)
        )
        if version is not None:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.name == name, model_versions.c.version == version)
                .values(last_updated_time=now)
            )

    # registered models -----------------------------------------------------------------------------------
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        validate_model_name(name)
        v.validate_text("Description", description)
        for key, value in (tags or {}).items():
            v.validate_tag_value(v.validate_key("Tag", key), value)
        now = now_ms()
        try:
            with self._tx() as conn:
                conn.execute(
                    insert(registered_models).values(
                        name=name, description=description or "", creation_time=now, last_updated_time=now
                    )
                )
                if tags:
                    conn.execute(
                        insert(registered_model_tags),
                        [{"name": name, "key": k, "value": val} for k, val in tags.items()],
                    )
                self._event(conn, "registered_model.created", name)
        except IntegrityError:
            raise AlreadyExists(f"A registered model named {name!r} exists already.") from None
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self._ro() as conn:
            return self._models(conn, [self._model_row(conn, name)])[0]

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> RegisteredModelsPage:
        size, offset = _page_size(max_results), _offset(page_token)
        query = select(registered_models)
        for clause in parse_registry_filter(filter_string, ("name",)):
            query = query.where(self._condition(clause, registered_models.c, registered_model_tags, "model"))
        query = query.order_by(registered_models.c.name).offset(offset).limit(size + 1)
        with self._ro() as conn:
            rows = conn.execute(query).all()
            found = self._models(conn, rows[:size])
        return RegisteredModelsPage(
            registered_models=found, next_page_token=_token(offset + size) if len(rows) > size else None
        )

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        v.validate_text("Description", description)
        with self._tx() as conn:
            self._model_row(conn, name)
            conn.execute(
                update(registered_models)
                .where(registered_models.c.name == name)
                .values(description=description)
            )
            self._touch(conn, name)
            self._event(conn, "registered_model.updated", name, description=description)
        return self.get_registered_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        validate_model_name(new_name)
        try:
            with self._tx() as conn:
                self._model_row(conn, name)
                conn.execute(
                    update(registered_models).where(registered_models.c.name == name).values(name=new_name)
                )
                for table in (stage_transitions, registry_events):  # history follows the model
                    conn.execute(update(table).where(table.c.name == name).values(name=new_name))
                self._event(conn, "registered_model.renamed", new_name, old_name=name)
        except IntegrityError:
            raise AlreadyExists(f"A registered model named {new_name!r} exists already.") from None
        return self.get_registered_model(new_name)

    def delete_registered_model(self, name: str) -> None:
        with self._tx() as conn:
            self._model_row(conn, name)
            live = conn.execute(
                select(model_versions.c.version, model_versions.c.stage).where(
                    model_versions.c.name == name,
                    model_versions.c.stage.in_([Stage.STAGING.value, Stage.PRODUCTION.value]),
                )
            ).first()
            alias = conn.execute(select(model_aliases.c.alias).where(model_aliases.c.name == name)).scalar()
            if live is not None or alias is not None:
                what = f"version {live.version} is in {live.stage}" if live else f"alias {alias!r} is set"
                raise InvalidState(
                    f"Refusing to delete model {name!r}: {what}. Archive its live versions and delete its aliases first."
                )
            # Explicit deletes: SQLite applies the ON DELETE CASCADE only with foreign keys on.
            for table in (model_version_tags, model_aliases, model_versions, registered_model_tags):
                conn.execute(delete(table).where(table.c.name == name))
            conn.execute(delete(registered_models).where(registered_models.c.name == name))
            self._event(conn, "registered_model.deleted", name)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        v.validate_tag_value(v.validate_key("Tag", key), value)
        with self._tx() as conn:
            self._model_row(conn, name)
            stmt = self._upsert(registered_model_tags).values(name=name, key=key, value=value)
            conn.execute(stmt.on_conflict_do_update(index_elements=["name", "key"], set_={"value": value}))
            self._touch(conn, name)
            self._event(conn, "registered_model.tag_set", name, key=key, value=value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        with self._tx() as conn:
            self._model_row(conn, name)
            gone = conn.execute(
                delete(registered_model_tags).where(
                    registered_model_tags.c.name == name, registered_model_tags.c.key == key
                )
            ).rowcount
            if not gone:
                raise NotFound(f"Model {name!r} has no tag {key!r}.")
            self._event(conn, "registered_model.tag_deleted", name, key=key)

    # versions --------------------------------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        signature: dict[str, object] | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        if not isinstance(source, str) or not source.strip():
            raise InvalidArgument(
                "A model version needs its source: the model's artifact URI, e.g. runs:/<run_id>/model."
            )
        v.validate_text("Description", description)
        for key, value in (tags or {}).items():
            v.validate_tag_value(v.validate_key("Tag", key), value)
        if run_id is not None:  # stored as given, as MLflow does: the run may live on another server
            v.validate_run_id(run_id)
        now = now_ms()
        with self._tx() as conn:
            self._model_row(conn, name, lock=True)
            number = (
                conn.execute(
                    select(func.max(model_versions.c.version)).where(model_versions.c.name == name)
                ).scalar()
                or 0
            ) + 1
            conn.execute(
                insert(model_versions).values(
                    name=name,
                    version=number,
                    creation_time=now,
                    last_updated_time=now,
                    description=description or "",
                    source=source,
                    run_id=run_id,
                    status=VersionStatus.READY.value,
                    stage=Stage.NONE.value,
                    signature=json.dumps(signature) if signature is not None else None,
                    created_by=user,
                )
            )
            if tags:
                conn.execute(
                    insert(model_version_tags),
                    [{"name": name, "version": number, "key": k, "value": val} for k, val in tags.items()],
                )
            self._touch(conn, name)
            self._event(conn, "model_version.created", name, number, user, source=source, run_id=run_id)
        return self.get_model_version(name, number)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        number = parse_version(version)
        with self._ro() as conn:
            return self._versions(conn, [self._version_row(conn, name, number)])[0]

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> ModelVersionsPage:
        size, offset = _page_size(max_results), _offset(page_token)
        query = select(model_versions)
        allowed = ("name", "run_id", "source", "stage", "version", "status")
        for clause in parse_registry_filter(filter_string, allowed):
            query = query.where(self._condition(clause, model_versions.c, model_version_tags, "version"))
        query = (
            query.order_by(model_versions.c.name, model_versions.c.version.desc())
            .offset(offset)
            .limit(size + 1)
        )
        with self._ro() as conn:
            rows = conn.execute(query).all()
            found = self._versions(conn, rows[:size])
        return ModelVersionsPage(
            model_versions=found, next_page_token=_token(offset + size) if len(rows) > size else None
        )

    def _condition(self, clause: Clause, columns: Any, tag_table: Any, level: str) -> Any:
        if clause.tag is not None:
            match = [tag_table.c.key == clause.tag, _compare(tag_table.c.value, clause.op, clause.value)]
            link = [tag_table.c.name == columns.name]
            if level == "version":
                link.append(tag_table.c.version == columns.version)
            return select(tag_table.c.key).where(*link, *match).exists()
        column = getattr(columns, clause.field)
        value: Any = clause.value
        if clause.field == "stage":
            value = (
                [Stage.parse(x).value for x in value]
                if isinstance(value, list)
                else Stage.parse(str(value)).value
            )
        if clause.field == "version":
            value = [parse_version(x) for x in value] if isinstance(value, list) else parse_version(value)
        return _compare(column, clause.op, value)

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        number = parse_version(version)
        v.validate_text("Description", description)
        with self._tx() as conn:
            self._version_row(conn, name, number)
            conn.execute(
                update(model_versions)
                .where(model_versions.c.name == name, model_versions.c.version == number)
                .values(description=description)
            )
            self._touch(conn, name, number)
            self._event(conn, "model_version.updated", name, number, description=description)
        return self.get_model_version(name, number)

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        number = parse_version(version)
        with self._tx() as conn:
            row = self._version_row(conn, name, number)
            aliases = list(
                conn.execute(
                    select(model_aliases.c.alias).where(
                        model_aliases.c.name == name, model_aliases.c.version == number
                    )
                ).scalars()
            )
            if not force and (aliases or Stage(row.stage).is_promotion):
                pointers = [f"alias {a!r}" for a in aliases] + (
                    [f"stage {row.stage}"] if Stage(row.stage).is_promotion else []
                )
                raise InvalidState(
                    f"Version {number} of {name!r} is in use ({', '.join(pointers)}): move those to another version "
                    "first, or delete with --force."
                )
            for table in (model_version_tags, model_aliases):
                conn.execute(delete(table).where(table.c.name == name, table.c.version == number))
            conn.execute(
                delete(model_versions).where(
                    model_versions.c.name == name, model_versions.c.version == number
                )
            )
            self._touch(conn, name)
            self._event(conn, "model_version.deleted", name, number, aliases_removed=aliases, stage=row.stage)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        number = parse_version(version)
        v.validate_tag_value(v.validate_key("Tag", key), value)
        with self._tx() as conn:
            self._version_row(conn, name, number)
            stmt = self._upsert(model_version_tags).values(name=name, version=number, key=key, value=value)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["name", "version", "key"], set_={"value": value})
            )
            self._touch(conn, name, number)
            self._event(conn, "model_version.tag_set", name, number, key=key, value=value)

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        number = parse_version(version)
        with self._tx() as conn:
            self._version_row(conn, name, number)
            gone = conn.execute(
                delete(model_version_tags).where(
                    model_version_tags.c.name == name,
                    model_version_tags.c.version == number,
                    model_version_tags.c.key == key,
                )
            ).rowcount
            if not gone:
                raise NotFound(f"Version {number} of {name!r} has no tag {key!r}.")
            self._event(conn, "model_version.tag_deleted", name, number, key=key)

    def get_latest_versions(
        self, name: str, stages: Sequence[Stage | str] | None = None
    ) -> list[ModelVersion]:
        wanted = {Stage.parse(s.value if isinstance(s, Stage) else s) for s in stages} if stages else None
        latest = self.get_registered_model(name).latest_versions
        return [mv for mv in latest if wanted is None or mv.stage in wanted]

    # stages and aliases ----------------------------------------------------------------------------------
    def transition_stage(
        self,
        name: str,
        version: int | str,
        stage: Stage | str,
        archive_existing: bool = False,
        comment: str = "",
        user: str | None = None,
    ) -> ModelVersion:
        number = parse_version(version)
        target = stage if isinstance(stage, Stage) else Stage.parse(stage)
        v.validate_text("Comment", comment)
        if target.is_promotion:
            self._enforce_gates(name, number, target.value)
        with self._tx() as conn:
            row = self._version_row(conn, name, number)
            now = now_ms()
            moved = [(number, Stage(row.stage))]
            if archive_existing and target.is_promotion:
                others = conn.execute(
                    select(model_versions.c.version, model_versions.c.stage).where(
                        model_versions.c.name == name,
                        model_versions.c.stage == target.value,
                        model_versions.c.version != number,
                    )
                ).all()
                moved += [(o.version, Stage(o.stage)) for o in others]
            for moved_version, from_stage in moved:
                to_stage = target if moved_version == number else Stage.ARCHIVED
                conn.execute(
                    update(model_versions)
                    .where(model_versions.c.name == name, model_versions.c.version == moved_version)
                    .values(stage=to_stage.value, last_updated_time=now)
                )
                note = (
                    comment
                    if moved_version == number
                    else f"archived: version {number} moved to {target.value}"
                )
                conn.execute(
                    insert(stage_transitions).values(
                        name=name, version=moved_version, from_stage=from_stage.value, to_stage=to_stage.value,
                        time=now, user=user, comment=note,
                    )
                )  # fmt: skip
                self._event(
                    conn, "model_version.stage_changed", name, moved_version, user,
                    from_stage=from_stage.value, to_stage=to_stage.value, comment=note,
                )  # fmt: skip
            self._touch(conn, name)
        return self.get_model_version(name, number)

    def stage_history(self, name: str, version: int | str | None = None) -> list[StageTransition]:
        query = select(stage_transitions).where(stage_transitions.c.name == name)
        if version is not None:
            query = query.where(stage_transitions.c.version == parse_version(version))
        with self._ro() as conn:
            self._model_row(conn, name)
            rows = conn.execute(query.order_by(stage_transitions.c.transition_id)).all()
        return [
            StageTransition(
                name=r.name, version=r.version, from_stage=Stage(r.from_stage), to_stage=Stage(r.to_stage),
                time=r.time, user=r.user, comment=r.comment or "",
            )
            for r in rows
        ]  # fmt: skip

    def set_alias(self, name: str, alias: str, version: int | str, user: str | None = None) -> ModelVersion:
        validate_alias(alias)
        number = parse_version(version)
        self._enforce_gates(name, number, "@" + alias)
        with self._tx() as conn:
            self._version_row(conn, name, number)
            before = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            ).scalar()
            stmt = self._upsert(model_aliases).values(name=name, alias=alias, version=number)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["name", "alias"], set_={"version": number})
            )
            self._touch(conn, name)
            self._event(conn, "model_alias.set" if before is None else "model_alias.moved", name, number, user,
                        alias=alias, previous_version=before)  # fmt: skip
        return self.get_model_version(name, number)

    def delete_alias(self, name: str, alias: str, user: str | None = None) -> None:
        with self._tx() as conn:
            self._model_row(conn, name)
            before = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            ).scalar()
            if before is None:
                raise NotFound(f"Model {name!r} has no alias {alias!r}.")
            conn.execute(
                delete(model_aliases).where(model_aliases.c.name == name, model_aliases.c.alias == alias)
            )
            self._event(conn, "model_alias.deleted", name, before, user, alias=alias)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with self._ro() as conn:
            number = conn.execute(
                select(model_aliases.c.version).where(
                    model_aliases.c.name == name, model_aliases.c.alias == alias
                )
            ).scalar()
            if number is None:
                self._model_row(conn, name)
                raise NotFound(f"Model {name!r} has no alias {alias!r}.")
            return self._versions(conn, [self._version_row(conn, name, number)])[0]

    # gates -----------------------------------------------------------------------------------------------
    def set_gate_policy(self, name: str, policy: GatePolicy) -> GatePolicy:
        policy = GatePolicy.model_validate(policy)
        for rule in policy.rules:
            gates.parse_rule(rule.rule)  # refuse a typo now, not at the next promotion
        with self._tx() as conn:
            self._model_row(conn, name)
            conn.execute(
                update(registered_models)
                .where(registered_models.c.name == name)
                .values(gate_policy=policy.model_dump_json())
            )
            self._touch(conn, name)
            self._event(conn, "registered_model.gates_set", name, rules=[r.rule for r in policy.rules])
        return policy

    def get_gate_policy(self, name: str) -> GatePolicy:
        with self._ro() as conn:
            raw = self._model_row(conn, name).gate_policy
        return GatePolicy.model_validate_json(raw) if raw else GatePolicy()

    def check_gates(self, name: str, version: int | str, target: str) -> list[GateCheck]:
        number = parse_version(version)
        candidate = self._facts(self.get_model_version(name, number))
        checks = []
        for rule in self.get_gate_policy(name).rules:
            if gates.applies(rule.on, target):
                checks.append(
                    gates.judge(
                        gates.parse_rule(rule.rule), candidate, lambda ref: self._reference(name, ref, number)
                    )
                )
        return checks

    def _enforce_gates(self, name: str, version: int, target: str) -> None:
        failed = [c for c in self.check_gates(name, version, target) if not c.passed]
        if failed:
            reasons = "; ".join(f"`{c.rule}` failed: {c.detail}" for c in failed)
            raise GateFailed(
                f"Promotion of {name!r} version {version} to {target} refused by its gate policy: {reasons}."
            )

    def _reference(self, name: str, ref: gates.Reference, candidate: int) -> gates.Facts | None:
        try:
            if ref.target.startswith("@"):
                other = self.get_version_by_alias(name, ref.target[1:])
            else:
                found = self.get_latest_versions(name, [ref.target])
                if not found:
                    return None
                other = found[0]
        except NotFound:
            return None
        return None if other.version == candidate else self._facts(other)

    def _facts(self, mv: ModelVersion) -> gates.Facts:
        facts = gates.Facts(version=mv.version, tags=dict(mv.tags))
        if mv.run_id:
            try:
                run = self._tracking.get_run(mv.run_id)
            except NotFound:
                return facts
            facts.metrics, facts.params = dict(run.data.metrics), dict(run.data.params)
        return facts

    # events ----------------------------------------------------------------------------------------------
    def list_events(
        self, name: str | None = None, after_id: int = 0, max_results: int = 100
    ) -> list[RegistryEvent]:
        query = select(registry_events).where(registry_events.c.event_id > int(after_id))
        if name is not None:
            query = query.where(registry_events.c.name == name)
        query = query.order_by(registry_events.c.event_id).limit(_page_size(max_results))
        with self._ro() as conn:
            rows = conn.execute(query).all()
        return [event_from_row(r) for r in rows]


def event_from_row(row: Any) -> RegistryEvent:
    return RegistryEvent(
        event_id=row.event_id,
        time=row.time,
        type=row.type,
        name=row.name,
        version=row.version,
        experiment_id=row.experiment_id,
        run_id=row.run_id,
        user=row.user,
        payload=json.loads(row.payload or "{}"),
    )


def _compare(column: Any, op: str, value: Any) -> Any:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "IN":
        return column.in_(value)
    if op == "NOT IN":
        return column.not_in(value)
    if op == "LIKE":
        return column.like(value)
    if op == "ILIKE":
        return func.lower(column).like(func.lower(value))
    raise InvalidArgument(f"Unsupported operator {op!r}.")  # pragma: no cover - the parser allows no other


__all__ = ["SqlModelRegistryStore"]
