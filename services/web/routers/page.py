"""``GET /``: the page, rendered on the server in the reader's language; its script and style come from
``/static`` (this package), nothing from elsewhere."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import HTMLResponse

from services.web.deps import ClientDep, SettingsDep, TemplatesDep
from services.web.texts import LANGS, SCRIPT_TEXTS, TASK_NAMES, pick_lang, t, task_name, template

router = APIRouter(tags=["page"])

# The page runs our own script and style only, talks to its own server only, and may not be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@router.get("/", response_class=HTMLResponse)
async def page(request: Request, templates: TemplatesDep, client: ClientDep, settings: SettingsDep,
               lang: Annotated[str | None, Query(max_length=8)] = None,
               accept_language: Annotated[str | None, Header(max_length=200)] = None) -> HTMLResponse:
    """The page: choose a task, upload a slice or a study, read the answer and its heatmaps."""
    lang = pick_lang(lang, accept_language)
    # The tasks the service offers; before it has answered once, the ones this page knows (the page must not
    # wait for a service that is still loading).
    names = [str(info.get("name")) for info in client.models_cached.get("tasks") or () if isinstance(info, dict)]
    tasks = [(name, task_name(name, lang)) for name in (names or list(TASK_NAMES))]
    script = {"texts": {key: template(key, lang) for key in SCRIPT_TEXTS}, "lang": lang,
              "maxBytes": settings.web_max_request_bytes, "maxFiles": settings.web_max_files}
    context = {
        "lang": lang, "tasks": tasks, "t": lambda key, **values: t(key, lang, **values),
        "other_langs": [(code, {"en": "English", "ru": "Русский"}[code]) for code in LANGS],
        # Inside <script type="application/json">: "<" as \u003c, so no text can end the element early.
        "script_data": json.dumps(script, ensure_ascii=False).replace("<", "\\u003c"),
    }
    return templates.TemplateResponse(request, "index.html", context, headers=SECURITY_HEADERS)
