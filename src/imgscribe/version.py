"""The package version, on the ground floor: the server, the CLI and the downloader report it.

``OLLAMA_API_VERSION`` is what ``GET /api/version`` answers: the Ollama release whose API this
server implements, since clients gate features on it (Continue wants >= 0.6.5, Raycast's extension
>= 0.6.4). 0.14.0 is the first Ollama release that serves every route imgscribe serves:
``/v1/responses`` arrived in 0.13.3, Anthropic's ``/v1/messages`` in 0.14.0. Raise it when the
server implements a newer release's API. imgscribe's own version is ``__version__``, sent in the
``X-Imgscribe-Version`` header and ``/api/version``'s ``imgscribe`` field.
"""

__version__ = "0.1.0"
OLLAMA_API_VERSION = "0.14.0"
