"""The Ryu shell (apps): the application, the launcher, logs, the REST listener, TLS."""
