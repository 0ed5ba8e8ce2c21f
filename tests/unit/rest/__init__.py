"""The REST layer (rest_api) in-process: the OpenAPI document, problems, signalling over REST."""
