"""What the page's routes need, as ``Annotated`` dependencies (the services' convention, services.common.app)."""
from __future__ import annotations

from typing import Annotated

from fastapi.templating import Jinja2Templates

from services.common.app import app_state
from services.common.metrics import HttpMetrics
from services.web.client import ServicesClient
from services.web.settings import WebSettings

SettingsDep = Annotated[WebSettings, app_state("settings")]
ClientDep = Annotated[ServicesClient, app_state("client")]
TemplatesDep = Annotated[Jinja2Templates, app_state("templates")]
MetricsDep = Annotated[HttpMetrics, app_state("http_metrics")]
