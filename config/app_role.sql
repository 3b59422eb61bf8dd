-- The least-privileged role the application runs as (run as the tables' owner, after
-- `migrate`, and again after every migration that adds tables). It may read and write
-- the read models and its own bookkeeping, but only SELECT and INSERT the event store,
-- and only SELECT where signing began: even with the immutability triggers disabled it
-- cannot change or delete history. What it can still INSERT (an event, a snapshot) is not
-- signed with the application's key, which never enters the database: loads never use such
-- a snapshot, and verify_events names both (README, "Threat model").
-- Replace ledger_app with your role's name; migrations run as the owner, not as this role.
GRANT USAGE ON SCHEMA public TO ledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ledger_app;
REVOKE UPDATE, DELETE, TRUNCATE ON events, snapshots, bank_access_log FROM ledger_app;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON signing_epoch FROM ledger_app;
-- What verify_events recorded is read by the health check, the admin and the next run: only
-- the verifier writes it (run verify_events as the owner, or as a role with these grants:
-- GRANT SELECT ON ALL TABLES ...; GRANT INSERT, UPDATE, DELETE ON verification_runs,
-- stream_verifications ...; GRANT USAGE ON ALL SEQUENCES ...).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON verification_runs, stream_verifications FROM ledger_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ledger_app;
