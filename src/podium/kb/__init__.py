"""Knowledge bases: chunked, embedded dataset versions searchable by vector, full text or both."""
