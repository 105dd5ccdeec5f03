"""One engine per process and one session per request, closed on teardown."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.storage.db import make_engine, make_session_factory
from services.api.context import request_globals


def init_app(app: Flask, settings: Settings) -> None:
    engine = make_engine(settings)
    app.extensions["engine"] = engine
    app.extensions["session_factory"] = make_session_factory(engine)
    app.teardown_appcontext(_close_session)


def get_engine() -> Engine:
    engine: Engine = current_app.extensions["engine"]
    return engine


def get_session_factory_of(app: Flask) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = app.extensions["session_factory"]
    return factory


def get_session_factory() -> sessionmaker[Session]:
    return get_session_factory_of(current_app)


def get_session() -> Session:
    """The request's session; views commit explicitly."""
    if "db_session" not in g:
        g.db_session = get_session_factory()()
    session: Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = request_globals().pop("db_session", None)
    if session is not None:
        session.close()
