"""Input handling and plumbing shared by every HTTP service (inference, explain).

Building an app (``services.common.app.build_app``, which both services' ``main.py`` call)::

    app = build_app(name="explain", title=..., settings=settings,   # a ServiceSettings subclass
                    routers=(...), state={"queue": queue, ...},      # resources for the routes' dependencies
                    http_metrics=..., body_limits={"/explain": ...})
    # logging, the auth start-up line, API-key digests, the JSON error handlers, the decode gate, HTTP
    # metrics and the streaming body limit, the same way for every service

Routes get resources through ``Annotated`` aliases ending in ``Dep`` (``services.<svc>/deps.py``, built with
``app_state``); protected routers carry ``dependencies=[Depends(require_api_key)]`` and a route that needs the
caller takes ``TenantDep``. In a route::

    task = resolve_task(task_form_value)         # Task, or 422 unknown_task
    role = resolve_model(role_field(role, model))  # "student" | "teacher", or 422 unknown_model
    image = await read_image_upload(upload, settings, gate)
    image.array   # 224 x 224 x 3 uint8 RGB, ready for the models
    image.info()  # {"sha256", "format", "size_bytes", "width", "height"} for the response

Errors (all :class:`ServiceError`, every class in ``errors.py`` and nowhere else): 400 ``MalformedRequest``,
401 ``Unauthorized``, 404 ``NotFound``, 413 ``PayloadTooLarge``, 415 ``UnsupportedMediaType``, 422
``UnknownTask`` / ``UnknownModel`` / ``UnknownAggregation`` / ``UnknownMethod`` / ``UnknownTarget`` /
``InvalidFormValue`` / ``TooManyFiles`` / ``InvalidImage`` / ``ImageTooLarge``, 503 ``NotReady`` / ``Busy`` /
``QueueUnavailable``. ``error_responses(400, 422, ...)`` documents them in a route's OpenAPI ``responses=``.

Modules (import from each; this package re-exports nothing): ``app`` (build_app, app_state), ``settings``
(ServiceSettings), ``errors``,
``body_limit`` (streaming size limit), ``uploads`` (read + decode), ``images`` (format sniffing, JPEG/PNG
decoding, DecodedImage), ``dicom`` (DICOM grey-level pipeline), ``validation`` (form values), ``auth``,
``metrics`` (Prometheus), ``logs``, ``healthcheck`` (the container
probes: ``python -m services.common.healthcheck``), ``service_client`` (the other side: the base of the bot's, the
web page's and the PACS bridge's clients of these services, httpx only).
"""
