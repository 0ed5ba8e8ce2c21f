"""The controller's pure core (mpa_sdn): its decisions checked on the fake OpenFlow network."""
