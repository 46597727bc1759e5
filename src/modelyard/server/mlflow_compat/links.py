"""The page at `/`, where the links the MLflow client prints lead ("View run ... at
http://host/#/experiments/1/runs/<id>").

A `#fragment` never reaches the server, so every such link requests `/`. Until Modelyard has a dashboard,
the page's script reads `location.hash` and sends the browser to the JSON of what the link names:

    #/experiments/<id>/runs/<run_id>...      /api/v1/runs/<run_id>
    #/experiments/<id>...                    /api/v1/experiments/<id>
    #/models/<name>/versions/<version>...    /api/v1/models/<name>/versions/<version>
    #/models/<name>...                       /api/v1/models/<name>

Without a hash (or with one it does not know) the page lists where the APIs are.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

_SCRIPT = r"""
(function () {
  var h = location.hash, m, e = encodeURIComponent;
  if ((m = /^#\/experiments\/([0-9]+)\/runs\/([0-9a-fA-F]+)(?:[/?].*)?$/.exec(h))) {
    location.replace("/api/v1/runs/" + m[2]);
  } else if ((m = /^#\/experiments\/([0-9]+)(?:[/?].*)?$/.exec(h))) {
    location.replace("/api/v1/experiments/" + m[1]);
  } else if ((m = /^#\/models\/([^/?]+)\/versions\/([0-9]+)(?:[/?].*)?$/.exec(h))) {
    location.replace("/api/v1/models/" + e(decodeURIComponent(m[1])) + "/versions/" + m[2]);
  } else if ((m = /^#\/models\/([^/?]+)(?:[/?].*)?$/.exec(h))) {
    location.replace("/api/v1/models/" + e(decodeURIComponent(m[1])));
  }
})();
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Modelyard</title>
<script>{_SCRIPT}</script>
</head>
<body>
<h1>Modelyard tracking server</h1>
<p>This server has no web UI yet. Links to runs and experiments (<code>/#/experiments/&lt;id&gt;/runs/&lt;run
id&gt;</code>, as the MLflow client prints them) open their JSON.</p>
<ul>
<li><a href="/api/v1/docs">/api/v1/docs</a>: Modelyard's REST API (<a href="/api/v1/openapi.json">OpenAPI
spec</a>)</li>
<li><code>/api/2.0/mlflow/</code>: the MLflow REST API, for <code>MLFLOW_TRACKING_URI=</code> this server</li>
<li><code>/api/2.0/mlflow-artifacts/</code>: MLflow's artifact proxy</li>
<li><a href="/health">/health</a>, <a href="/ready">/ready</a></li>
</ul>
</body>
</html>
"""


@router.get("/", include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse(PAGE)


__all__ = ["PAGE", "router"]
