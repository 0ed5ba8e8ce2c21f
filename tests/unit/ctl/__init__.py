"""mpa-ctl (mpa_ctl) against the real REST application and core."""
