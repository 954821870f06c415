"""The model worker: one process per loaded local model, speaking the OpenAI protocol on a unix socket.

Only this package imports torch; gateway processes talk to it like to any other upstream.
"""
