"""The OpenAPI document of `/v1`, the OpenAI-compatible surface (served at `/v1/openapi.json`).

`/v1` lives outside FastAPI (the front door calls its handlers directly), so FastAPI cannot describe it; this
module does, by hand, for what the gateway reads and answers. Requests name the fields the gateway checks
itself (the rest go to the upstream as sent, so extra fields are allowed); every error answers in OpenAI's
shape, `{"error": {"message", "type", "code", "param"}}`. Client generators and schemathesis (the suite fuzzes
`/v1` with it) read this document.
"""

from __future__ import annotations

from typing import Any

from podium.core.version import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_STATUSES = {
    "400": "The body is not a JSON object, or a field is missing or of the wrong type.",
    "401": "No key, or a key that is unknown, revoked or expired.",
    "403": "The key's role may not call models (a viewer), or a guardrail refused the call.",
    "404": "No model or route of that name in the key's project.",
    "405": "The method is not served on this path.",
    "413": "The body is larger than the server's limit.",
    "429": "A rate limit or budget of the key, user, project or route is spent; see `Retry-After`.",
    "502": "The upstream failed or answered something that is not a valid answer.",
    "503": "Every deployment of the route is cooling down after failures, or the model worker is not up.",
    "504": "The upstream did not answer in time.",
}

_TOKENS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
_TEXTS = {  # `prompt` and `input`: text, texts, token ids or arrays of token ids
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        _TOKENS,
        {"type": "array", "items": _TOKENS, "minItems": 1},
    ]
}

_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer", "minimum": 0},
        "completion_tokens": {"type": "integer", "minimum": 0},
        "total_tokens": {"type": "integer", "minimum": 0},
    },
}

_SAMPLING = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "n": {"type": "integer", "minimum": 1, "maximum": 8},
    "max_tokens": {"type": "integer", "minimum": 1},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "seed": {"type": "integer"},
    "stream": {"type": "boolean", "description": "Answer as server-sent events, ended by `data: [DONE]`."},
    "user": {"type": "string", "maxLength": 200, "description": "The end user, recorded on the trace."},
    "metadata": {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "Recorded on the trace; `session_id` groups traces into a session.",
    },
}


def _answer(schema: str, description: str, *, streams: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {"description": description, "content": content}


def _responses(ok: dict[str, Any], statuses: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for status in statuses:
        out[status] = {"description": _ERROR_STATUSES[status], "content": {"application/json": {"schema": _ERROR}}}
    return out


_CALL_ERRORS = ["400", "401", "403", "404", "413", "429", "502", "503", "504"]


def _generation(summary: str, request: str, answer: str, streams: bool) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": request[0].lower() + request[1:],
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}},
            },
            "responses": _responses(_answer(answer, "The answer.", streams=streams), _CALL_ERRORS),
        }
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of `/v1`'s generation and model endpoints."""
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "object"}},
                    {"type": "null"},
                ]
            },
            "name": {"type": "string"},
            "tool_call_id": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
        },
    }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "code": {"type": ["string", "null"]},
                        "param": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "A route or a registered model (`name`, `name@alias`, `name@version`).",
                },
                "messages": {"type": "array", "minItems": 1, "items": message},
                **_SAMPLING,
                "tools": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["type", "function"],
                        "properties": {
                            "type": {"const": "function"},
                            "function": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "description": {"type": "string"},
                                    "parameters": {"type": "object"},
                                },
                            },
                        },
                    },
                },
                "tool_choice": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "response_format": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
                "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                "prompt": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "label": {"type": "string"},
                        "version": {"type": "integer", "minimum": 1},
                        "variables": {"type": "object"},
                    },
                    "description": "A managed prompt, rendered into the messages (which may then be left out).",
                },
                "retrieval": {
                    "type": "object",
                    "required": ["kb"],
                    "additionalProperties": False,
                    "properties": {
                        "kb": {"type": "string", "minLength": 1, "maxLength": 200},
                        "k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
                        "mode": {"enum": ["vector", "text", "hybrid"], "default": "hybrid"},
                        "filter": {
                            "type": "object",
                            "properties": {
                                "source": {"type": "array", "items": {"type": "string"}},
                                "tags_any": {"type": "array", "items": {"type": "string"}},
                                "created_from": {"type": "string", "format": "date-time"},
                                "created_to": {"type": "string", "format": "date-time"},
                            },
                        },
                        "query": {"type": "string", "minLength": 1, "maxLength": 8192},
                        "min_similarity": {"type": "number", "minimum": -1, "maximum": 1},
                        "rerank": {
                            "type": "object",
                            "required": ["model"],
                            "properties": {
                                "model": {"type": "string", "minLength": 1},
                                "candidates": {"type": "integer", "minimum": 1, "maximum": 100},
                            },
                        },
                    },
                    "description": "Retrieval-augmented generation: the knowledge base's best chunks for the query "
                    "(default: the last user message) go into the prompt as numbered sources (or a prompt "
                    "version's `context` variable); the answer carries `citations` and `x-podium-citations`.",
                },
            },
            "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}],
            "additionalProperties": True,
        },
        "CompletionRequest": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": {
                "model": {"type": "string", "minLength": 1, "maxLength": 200},
                "prompt": _TEXTS,
                **_SAMPLING,
                "max_tokens": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "0 generates nothing: with `echo` and `logprobs`, the prompt's tokens are scored.",
                },
                "echo": {"type": "boolean", "description": "Return the prompt before the completion."},
                "logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
            },
            "additionalProperties": True,
        },
        "EmbeddingRequest": {
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": {"type": "string", "minLength": 1, "maxLength": 200},
                "input": {
                    **_TEXTS,
                    "description": "Text, or token ids: passed as sent to a remote model; a local embedding model"
                    " reads them as OpenAI cl100k_base ids (what langchain's OpenAIEmbeddings sends), at most 8,192"
                    " per input and 300,000 per request.",
                },
                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                "dimensions": {"type": "integer", "minimum": 1},
                "user": _SAMPLING["user"],
            },
            "additionalProperties": True,
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": _USAGE,
                "citations": {
                    "type": "array",
                    "description": "With `retrieval`: the chunks put into the prompt, `[index]` as numbered there.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "kb": {"type": "string"},
                            "id": {"type": "string"},
                            "source": {"type": "string"},
                            "doc_id": {"type": "string"},
                            "start": {"type": "integer"},
                            "end": {"type": "integer"},
                            "score": {"type": "number"},
                            "text": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Completion": {
            "type": "object",
            "required": ["object", "choices"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "text_completion"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": _USAGE,
            },
        },
        "EmbeddingList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object"}},
                "usage": _USAGE,
            },
        },
        "Model": {
            "type": "object",
            "required": ["id", "object"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
            },
        },
    }
    paths: dict[str, Any] = {
        "/v1/chat/completions": _generation("Chat completion", "ChatCompletionRequest", "ChatCompletion", True),
        "/v1/completions": _generation("Text completion", "CompletionRequest", "Completion", True),
        "/v1/embeddings": _generation("Embeddings", "EmbeddingRequest", "EmbeddingList", False),
        "/v1/models": {
            "get": {
                "summary": "The models and routes the key may call",
                "operationId": "listModels",
                "security": [{"bearer": []}],
                "responses": _responses(_answer("ModelList", "The list.", streams=False), ["401"]),
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model or route",
                "operationId": "getModel",
                "security": [{"bearer": []}],
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _responses(_answer("Model", "The model.", streams=False), ["401", "404"]),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Podium gateway",
            "version": __version__,
            "description": "OpenAI-compatible: chat, completions, embeddings and models. Fields the gateway "
            "does not read are sent to the upstream as given.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
