"""The local Vertex AI REST API: the subset the tuning flow uses, at ``/v1`` and ``/v1beta1``.

One module per Vertex resource (:mod:`.tuning_jobs`, :mod:`.custom_jobs`, :mod:`.endpoints`,
:mod:`.models`, :mod:`.operations`, :mod:`.predict`) on Starlette routing; :mod:`.app` mounts
them and adds the cross-cutting checks (:mod:`.middleware`). Request bodies parse into the real
``aiplatform_v1beta1`` proto types and responses are those protos as JSON (:mod:`.wire`);
errors use Google's JSON error shape (:mod:`.errors`); calls outside the subset answer 501
naming the method.

Security (see docs/local.md): 127.0.0.1 by default, a bearer token on every route, a
Host/Origin allowlist against DNS rebinding, no CORS headers, a body size cap (413), a
``max_tokens`` cap, and a cap on concurrent predictions answered with 429, never queued.
"""
