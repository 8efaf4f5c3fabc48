"""The audit: sovereignty, ecosystem, licences, openness and tokenizer efficiency.

Entry point: ``kaieval.audit.engine.audit_dossier``. Kept import-free so that the
programme spec can read the measure catalogue (``audit.measures``) without
loading the engines.
"""
