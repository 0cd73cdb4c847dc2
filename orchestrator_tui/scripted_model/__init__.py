"""The scripted OpenAI-compatible model that stands in for an LLM in tests and the demo.

``directives`` is the prompt language it answers (``STREAM``, ``FAST n``, ``READ path``, ``ASK``,
``HANG``…; see its docstring) and ``server`` serves it over HTTP to OpenCode.
"""
