"""The runner's APIs as translators over one internal request (internal.py).

Each API reads its own request shape into a `GenRequest` (checked with its own parameter names),
the gateway runs it on the model's engine (gateway.py: scheduling, the request log, metrics,
streams), and the API writes the `GenResult` or the stream's events in its own shape, errors
included. Tool calls, stop sequences, usage and errors are done once, inside (generation.py,
toolcalls.py), never per API.

- openai_shapes.py: OpenAI chat completions and completions (routes in ../openai_api.py);
- anthropic.py: Anthropic's Messages API (`/v1/messages`, `/anthropic/v1/messages`, count_tokens);
- ollama.py: Ollama's `/api/*`;
- responses.py: OpenAI's Responses API, kept in memory for an hour (response_store.py).
"""
