"""Tracing: traces and spans of every call, written off the hot path by a batched writer."""
