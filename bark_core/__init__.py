"""bark_core: Suno's Bark text-to-speech as a library (no HTTP, no Redis).

Import the pipeline from `bark_core.pipeline` (it imports torch); the modules `params`,
`voices`, `errors`, `constants`, `text` and `types` import only numpy, so a process that must
not load torch (the API) can validate requests with them.
"""

__version__ = "0.1.0"
