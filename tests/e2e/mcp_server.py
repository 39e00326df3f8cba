"""A real MCP server built with the official Python SDK (`mcp` 2.x, `MCPServer`), served over
Streamable HTTP by uvicorn: both protocol eras on one endpoint (the SDK routes 2026-07-28
requests by their `MCP-Protocol-Version`), SSE answers or, with `--json`, JSON answers.

It demands its own credential (`Authorization: Bearer <--token>`), so a request that reaches
it with the agent's credential fails, and it records every request it receives (method, headers,
body) for the tests to read at `GET /_seen`. `/paged` is a hand-written JSON-RPC endpoint
whose `tools/list` comes in pages, for the pagination test.

    python mcp_server.py --port P --token T [--json]
"""

import argparse
import json

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import JSONResponse, Response

SEEN = []
REFUNDED = []
PAGES = [
    {"tools": [{"name": "lookup_customer", "inputSchema": {"type": "object"}},
               {"name": "delete_customer", "inputSchema": {"type": "object"}}], "nextCursor": "2"},
    {"tools": [{"name": "wipe_database", "inputSchema": {"type": "object"}},
               {"name": "send_email", "inputSchema": {"type": "object"}}]},
]

server = MCPServer("crm-under-test")


@server.tool()
def lookup_customer(id: str) -> str:
    """Looks a customer up."""
    return f"customer {id}: Ada Lovelace"


@server.tool()
def send_email(to: str, body: str, subject: str = "") -> str:
    """Sends an email."""
    return f"sent to {to}"


@server.tool()
def refund(customer_id: str, amount: float) -> str:
    """Refunds a customer."""
    REFUNDED.append(amount)
    return f"refunded {amount}"


@server.tool()
def set_tier(customer_id: str, tier: str) -> str:
    """Sets a customer's tier."""
    return f"{customer_id} is now {tier}"


@server.tool()
def delete_customer(id: str) -> str:
    """Deletes a customer (never allowed by the tests' policy)."""
    return f"deleted {id}"


@server.tool()
def failing_tool() -> str:
    """Always fails: its result has isError."""
    raise ValueError("this tool always fails")


@server.resource("crm://customers/{id}")
def customer(id: str) -> str:
    return f"customer record {id}"


@server.resource("crm://internal/ledger")
def ledger() -> str:
    return "the secret ledger"


@server.prompt()
def greeting(name: str) -> str:
    return f"Greet {name} warmly."


@server.prompt()
def internal_prompt() -> str:
    return "internal instructions"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mcp_app = server.streamable_http_app(json_response=args.json)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return await mcp_app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"] == "/_seen":
            return await JSONResponse({"requests": SEEN, "refunded": REFUNDED})(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        SEEN.append({"method": scope["method"], "path": scope["path"], "headers": headers,
                     "body": body.decode("utf-8", "replace")})
        if headers.get("authorization") != f"Bearer {args.token}":
            return await Response("wrong credential", status_code=401)(scope, receive, send)
        if scope["path"] == "/paged":
            message = json.loads(body)
            page = PAGES[1] if (message.get("params") or {}).get("cursor") == "2" else PAGES[0]
            answer = {"jsonrpc": "2.0", "id": message["id"], "result": page}
            return await JSONResponse(answer)(scope, receive, send)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await mcp_app(scope, replay, send)

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
