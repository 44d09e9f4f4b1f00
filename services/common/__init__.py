"""Input handling and plumbing shared by every HTTP service (inference, explain).

Building an app::

    settings = MySettings()                      # a ServiceSettings subclass (DISEASEID_* environment)
    app = FastAPI(...)
    install_error_handlers(app)                  # every error -> {"error": {"code", "message"}}
    configure_auth(app, settings.api_keys)       # X-API-Key, constant time; empty = development mode
    app.add_middleware(BodyLimitMiddleware, default=1 << 20, per_path={"/explain": settings.max_upload_bytes})
    # at start-up (lifespan):
    log_auth_mode(settings.api_keys, "explain")  # warns loudly in development mode

In a route (``dependencies=[Depends(require_api_key)]`` on the router)::

    task = resolve_task(task_form_value)         # Task, or 422 unknown_task
    role = resolve_model(model_form_value)       # "student" | "teacher", or 422 unknown_model
    image = await read_image_upload(upload, settings)
    image.array   # 224 x 224 x 3 uint8 RGB, ready for the models
    image.info()  # {"sha256", "format", "size_bytes", "width", "height"} for the response

Errors raised (all :class:`ServiceError`): 400 ``MalformedRequest``, 401 ``Unauthorized``, 413
``PayloadTooLarge``, 415 ``UnsupportedMediaType``, 422 ``UnknownTask`` / ``UnknownModel`` /
``UnknownAggregation`` / ``InvalidImage`` / ``ImageTooLarge``, 503 ``NotReady``. ``error_responses(400, 422,
...)`` documents them in a route's OpenAPI ``responses=``.

Modules (import from each; this package re-exports nothing): ``settings`` (ServiceSettings), ``errors``,
``body_limit`` (streaming size limit), ``uploads`` (read + decode), ``images`` (format sniffing, JPEG/PNG
decoding, DecodedImage), ``dicom`` (DICOM grey-level pipeline), ``validation`` (form values), ``auth``,
``metrics`` (Prometheus), ``logs``, ``liveness`` (which RQ workers beat), ``healthcheck`` (the container
probes: ``python -m services.common.healthcheck``).
"""
