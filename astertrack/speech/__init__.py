"""Speech on the company's own server: transcribing kept recordings."""
