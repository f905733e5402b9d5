"""FastAGI server and process-per-call AGI script: attribute each inbound call, route it to a free manager."""
