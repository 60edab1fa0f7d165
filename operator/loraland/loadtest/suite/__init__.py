"""The locustfile shipped with the package (``loraland loadtest sweep`` runs it).

It lives in a folder of its own because Locust puts a locustfile's folder on
``sys.path``; here nothing else in that folder can shadow a module.
"""
