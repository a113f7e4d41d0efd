"""bark_core: Suno's Bark text-to-speech as a library (no HTTP, no Redis).

Import the pipeline from `bark_core.pipeline` (it imports torch); the modules `params`,
`voices`, `errors`, `constants`, `audio`, `hub`, `text`, `speech_rate`, `planner` and `types`
import only the standard library, numpy and pysbd, so a process that must not load torch (the
API) can validate and plan requests with them.
"""

__version__ = "0.1.0"
