"""Job state: cursors of long jobs and heartbeats of the background processes."""
