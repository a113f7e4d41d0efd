"""/openapi.json, /docs and /redoc, behind the API key like every route but health.

FastAPI's built-in ones take no dependencies. With keys set, open the docs as
/docs?api_key=KEY: the page then fetches the schema with the same query.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ..deps import Authorized

router = APIRouter(dependencies=[Authorized], include_in_schema=False)


def _schema_url(request: Request) -> str:
    """The schema's URL, carrying the caller's ?api_key= (already checked) and nothing else of
    the query, percent-encoded: safe in the page's script and attributes alike."""
    key = request.query_params.get("api_key")
    return "/openapi.json" + (f"?api_key={quote(key, safe='')}" if key else "")


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=_schema_url(request), title="bark-serve")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=_schema_url(request), title="bark-serve")
