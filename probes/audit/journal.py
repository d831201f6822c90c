"""An audit's place in the history database: created with its input, one item per finished
domain (its run and its row in one transaction), and resumed after a crash or `kill -9`.

The store's (audit, seq) key makes recording idempotent, so a domain that finished is never
probed again on resume and never listed twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probes.audit.inputs import Item
from probes.audit.runner import Done
from probes.history.store import HistoryStore, options_json
from probes.model.options import Options


class AuditJournal:
    def __init__(self, store: HistoryStore, audit_id: str, items: list[Item], meta: dict[str, Any]):
        self.store = store
        self.audit_id = audit_id
        self.items = items
        self.meta = meta
        self.rows: dict[int, dict[str, Any]] = {}

    @classmethod
    def create(
        cls, items: list[Item], meta: dict[str, Any], options: Options, path: Path | None = None
    ) -> AuditJournal:
        store = HistoryStore(path)
        audit_id = store.create_audit(
            [item.to_json() for item in items], {**meta, "options": options_json(options)}
        )
        return cls(store, audit_id, items, meta)

    @classmethod
    def resume(cls, audit_id: str, path: Path | None = None) -> AuditJournal:
        """The audit as recorded: its input, its settings and the rows already finished.
        UnknownAudit (a CheckError) for an id the history does not have."""
        store = HistoryStore(path)
        audit = store.audit(audit_id)
        items = [Item.from_json(data) for data in audit.input]
        journal = cls(store, audit_id, items, dict(audit.options))
        for done in audit.items:
            if done.row is not None:
                journal.rows[done.seq] = done.row
        return journal

    @property
    def notices(self) -> list[str]:
        return list(self.store.notices)

    def pending(self) -> list[Item]:
        return [item for item in self.items if item.seq not in self.rows]

    def record(self, done: Done) -> None:
        self.store.record_audit_item(
            self.audit_id,
            done.item.seq,
            done.item.domain,
            done.row,
            doc=done.doc,
            started=done.started,
            finished=done.finished,
            options=self.meta.get("options"),
        )
        self.rows[done.item.seq] = done.row

    def ordered_rows(self) -> list[dict[str, Any]]:
        return [self.rows[item.seq] for item in self.items if item.seq in self.rows]

    def documents(self) -> list[dict[str, Any]]:
        """The stored check documents of the finished items (for --prometheus on resume)."""
        audit = self.store.audit(self.audit_id)
        docs = []
        for done in audit.items:
            if done.run_id is not None:
                docs.append(self.store.run(done.run_id).report)
        return docs

    def finish(self) -> None:
        self.store.finish_audit(self.audit_id)

    def close(self) -> None:
        self.store.close()
