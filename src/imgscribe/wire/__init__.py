"""The dialects spoken on the network and one cancellable streaming transport on httpx."""
