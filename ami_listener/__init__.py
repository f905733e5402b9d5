"""astertrack-ami: the AMI listener daemon (connection, ordered dispatch, writer, sweeper, rebuild)."""
