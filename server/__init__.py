"""The application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from server.config import check_settings, engine_options, load_settings
from server.extensions import csrf, db, init_celery, init_redis, login, migrate
from server.filters import register_filters
from server.inputs import init_inputs
from server.logs import init_logging
from server.sessions import SessionInterface
from server.static_files import App, init_static


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build an app from the environment; `config` overrides it (tests, demo)."""
    app = App(__name__, static_folder="../static", instance_relative_config=True)
    app.config.from_mapping(load_settings(Path(app.instance_path)))
    app.config.update(config or {})
    if config and "SQLALCHEMY_DATABASE_URI" in config and "SQLALCHEMY_ENGINE_OPTIONS" not in config:
        # the production options for the database given (tests: pool sizes and connection settings as deployed)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(config["SQLALCHEMY_DATABASE_URI"], os.environ)
    check_settings(app.config)
    if app.config["TRUSTED_PROXIES"]:  # behind nginx/SLB: the scheme and host WeChat used, for OAuth callbacks
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    elif app.config["PRODUCTION"]:
        app.wsgi_app = warn_on_proxy_headers(app.wsgi_app)  # type: ignore[method-assign]
    app.session_interface = SessionInterface()
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Chinese stays readable in JSON and |tojson
    init_logging(app)

    import models  # noqa: F401  (every table registered before migrations look)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    csrf.init_app(app)
    login.init_app(app)
    register_filters(app)
    init_static(app)
    init_inputs(app)  # before any route is added: the id converter applies as rules are compiled
    init_redis(app)
    init_celery(app)

    # Imported here so that importing `server` (as models and tasks do) stays cheap and cycle-free.
    from server import api, citizen, console, ops, wechat
    from server.wechat.client import init_client
    from server.wechat.gateway import Gateway
    from server.wechat.protocol import Cipher

    app.extensions["wechat_gateway"] = Gateway(app)
    app.extensions["wechat_cipher"] = (
        Cipher(app.config["WECHAT_TOKEN"], app.config["WECHAT_AES_KEY"], app.config["WECHAT_APPID"])
        if app.config["WECHAT_AES_KEY"]
        else None
    )
    init_client(app)

    csrf.exempt(wechat.bp)  # WeChat signs its POSTs; there is no form token to check
    csrf.exempt(api.bp)  # Open311 clients authenticate with api_key; there is no browser session to forge
    app.register_blueprint(wechat.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(console.bp, url_prefix="/admin")
    app.register_blueprint(citizen.bp, url_prefix="/m")
    app.register_blueprint(api.bp, url_prefix="/open311/v2")
    register_error_handlers(app)
    deny_framing(app)

    from server.cli import create_admin, seed_demo, wechat_cli

    app.cli.add_command(seed_demo)
    app.cli.add_command(create_admin)
    app.cli.add_command(wechat_cli)

    if app.config["DEMO"]:
        mount_emulator(app)
        from server import demo

        demo.start(app)  # the demo server only: periodic jobs with no celery beat
    return app


def mount_emulator(app: Flask) -> None:
    """Demo mode: WeChat's API answered in-process under /wechat-emulator, so nothing needs credentials."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from server.wechat.emulator import create_emulator

    emulator = create_emulator(app.config["WECHAT_APPID"], app.config["WECHAT_SECRET"])
    app.extensions["wechat_emulator_app"] = emulator
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/wechat-emulator": emulator})  # type: ignore[method-assign]


def warn_on_proxy_headers(wsgi_app: Any) -> Any:
    """TRUSTED_PROXIES=0 while a proxy forwards: every citizen then has the proxy's address, so one IP's tip limit and
    login lockout apply to the whole city. Said in the log once per process, at the first forwarded request."""
    warned = False

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        nonlocal warned
        if not warned and "HTTP_X_FORWARDED_FOR" in environ:
            warned = True
            logging.getLogger(__name__).warning(
                "X-Forwarded-For received but TRUSTED_PROXIES=0: all clients share the proxy's address for rate "
                "limits and login lockout; set TRUSTED_PROXIES to the number of proxies in front"
            )
        return wsgi_app(environ, start_response)

    return app


def deny_framing(app: Flask) -> None:
    """Clickjacking: another site showing a page of ours in an invisible frame would turn a click there into 发布菜单,
    吊销密钥 or a vote here. No page of ours is meant to be framed (WeChat opens them as the top page)."""

    @app.after_request
    def _no_frames(response: Response) -> Response:
        if response.mimetype == "text/html":  # error pages and redirects too; images, JSON and XML are not pages
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response


def register_error_handlers(app: Flask) -> None:
    messages = {
        400: "请求有误，请检查后重试",
        401: "登录已过期，请从公众号菜单重新进入",
        403: "没有权限访问此页面",
        404: "页面不存在",
        405: "不支持此操作",
        413: "上传内容过大",
        429: "操作太频繁，请稍后再试",
        500: "系统繁忙，请稍后再试",
    }

    def answer(code: int, message: str):  # type: ignore[no-untyped-def]
        if request.path.startswith("/open311/") or request.accept_mimetypes.best == "application/json":
            return jsonify(error=message, status=code), code
        citizen = request.path.startswith("/m/")
        home = "/m/" if citizen else "/admin/"
        return render_template("error.html", code=code, message=message, home=home, citizen=citizen), code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        code = exc.code or 500
        # Ours are in Chinese; werkzeug's defaults and libraries' descriptions are English, not for these users.
        own = exc.description and not exc.description.isascii()
        return answer(code, exc.description if own else messages.get(code, "出错了"))

    @app.errorhandler(CSRFError)
    def form_expired(exc: CSRFError):  # type: ignore[no-untyped-def]
        return answer(400, "页面已过期（可能已退出登录），请刷新页面后重新提交")

    @app.errorhandler(DataError)
    def out_of_range(exc: DataError):  # type: ignore[no-untyped-def]
        # A value the database refuses (a number beyond its columns, say) that no check caught: the input is at fault.
        app.logger.warning("input refused by the database on %s: %s", request.path, exc.orig)
        db.session.rollback()
        return answer(400, "输入的数值或内容超出允许范围，请检查后重试")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        app.logger.exception("unhandled error on %s", request.path)
        db.session.rollback()
        return answer(500, messages[500])
