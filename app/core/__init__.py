"""Process-wide pieces every role shares: settings, domain errors, logs, model choice."""
