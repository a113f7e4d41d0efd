"""Token layout and rates of Bark, as in suno-ai/bark's generation.py (the ground truth)."""

SAMPLE_RATE = 24_000
CONTEXT_WINDOW = 1024

# Semantic stage: 10,000 semantic tokens; text ids are shifted past them.
SEMANTIC_VOCAB_SIZE = 10_000
SEMANTIC_RATE_HZ = 49.9
SEMANTIC_PAD_TOKEN = 10_000  # also the semantic EOS id
TEXT_ENCODING_OFFSET = 10_048
TEXT_PAD_TOKEN = 129_595
SEMANTIC_INFER_TOKEN = 129_599
MAX_TEXT_TOKENS = 256
MAX_SEMANTIC_HISTORY = 256
MAX_SEMANTIC_TOKENS = 768  # the original's n_tot_steps

# Coarse stage: two interleaved EnCodec codebooks after the semantic ids.
CODEBOOK_SIZE = 1024
N_COARSE_CODEBOOKS = 2
N_FINE_CODEBOOKS = 8
COARSE_RATE_HZ = 75
COARSE_SEMANTIC_PAD_TOKEN = 12_048
COARSE_INFER_TOKEN = 12_050
MAX_COARSE_HISTORY = 630
COARSE_WINDOW = 60  # decode steps per sliding window
COARSE_SEMANTIC_WINDOW = 256  # semantic tokens a coarse window sees (right-padded)
# coarse tokens (both codebooks) per semantic token: 75 / 49.9 * 2
SEMANTIC_TO_COARSE_RATIO = COARSE_RATE_HZ / SEMANTIC_RATE_HZ * N_COARSE_CODEBOOKS

# Fine stage: non-causal over 1024 frames, history at most 512 frames.
FINE_WINDOW = 1024
FINE_STRIDE = 512  # frames a fine window advances by
MAX_FINE_HISTORY = 512

# EnCodec 24 kHz: 320 samples per code frame (strides 8 * 5 * 4 * 2).
SAMPLES_PER_FRAME = 320

# The real checkpoints' vocabulary sizes (the checkpoint maker writes the same).
SEMANTIC_INPUT_VOCAB = 129_600
SEMANTIC_OUTPUT_VOCAB = 10_048
COARSE_VOCAB = 12_096
FINE_VOCAB = 1_056


def semantic_token_cap(max_duration_s: float | None) -> int:
    """How many semantic tokens the original generates, EOS aside, under `max_gen_duration_s`:
    it adds 1 / 49.9 s per token and stops once the running sum exceeds the duration, so the
    cap is the first n whose (float) sum is over it, at most 768. Summed, not n / 49.9, so that
    the rounding is the original's too."""
    if max_duration_s is None:
        return MAX_SEMANTIC_TOKENS
    total = 0.0
    for n in range(1, MAX_SEMANTIC_TOKENS + 1):
        total += 1 / SEMANTIC_RATE_HZ
        if total > max_duration_s:
            return n
    return MAX_SEMANTIC_TOKENS
