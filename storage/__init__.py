"""The shared ticket store: models, engine, migrations, store verbs and the blob store."""
