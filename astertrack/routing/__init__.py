"""A call's routing decision: where it came from, who answers, working hours, manager holds, channel-variable names."""
