"""mpa-ctl: the controller's northbound REST API (``/mpa/v1``) on the command line."""
