"""Backing services, each bundled or external with the same outputs either way: the object store
(SeaweedFS), the database (PostgreSQL) and the registry token scheme (`registry_auth`)."""
