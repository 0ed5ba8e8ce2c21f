"""What the MN and the controller agree on (mpa_protocol): PANA, EAP, the signalling document."""
