"""The MN client (mpa_mn) against the real core, its host faked."""
