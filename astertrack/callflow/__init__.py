"""What happened on a call: AMI bytes to events, the call state machine, the outcome rules."""
