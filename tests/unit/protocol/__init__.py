"""What the MN and the controller agree on (mpa_protocol): credentials files, the signalling document."""
