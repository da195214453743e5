"""fer-web: a browser client of ferstream, and a REST endpoint, served by a small gateway.

Browsers cannot open a bidirectional gRPC stream, so the gateway (Starlette on uvicorn) speaks WebSocket
and HTTP to the page and gRPC to a fer-server, as an ordinary client (ferstream.client.EmotionClient):
each page's WebSocket is one live-mode StreamAnnotate, and `POST /v1/annotate` is one Annotate call.
"""
