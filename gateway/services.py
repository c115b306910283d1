"""Builds the shared objects once (engine, store, blobs, mailer, intake, pipeline) from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from gateway.config import Settings
from gateway.inbound.dkim_verify import DnsTxt
from gateway.inbound.pipeline import Pipeline
from gateway.intake import Intake
from gateway.outbound.mailer import Mailer
from storage.blobs import BlobStore
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.store import Store


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: Store
    blobs: BlobStore
    mailer: Mailer
    intake: Intake
    pipeline: Pipeline

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings, *, migrate: bool = True,
                   dns_txt: DnsTxt | None = None) -> Services:
    """The service graph; `dns_txt` replaces the resolver for DKIM key lookups (tests)."""
    engine = make_engine(settings.database_url)
    if migrate:
        upgrade(engine)
    store = Store(engine)
    blobs = BlobStore(settings.blob_dir)
    mailer = Mailer(settings, store)
    intake = Intake(store, blobs, mailer)
    return Services(settings, engine, store, blobs, mailer, intake,
                    Pipeline(settings, store, blobs, intake, dns_txt=dns_txt))
