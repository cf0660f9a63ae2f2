-- floatsrv schema v2: users, issued tokens, API keys, the auth version, and the append-only audit log.

-- Users who may log in. Users from the config file (source 'config') or the environment ('env') are
-- re-synced at every start and never face a forced password change; 'local' users are made by admins.
CREATE TABLE users (
    username             TEXT    PRIMARY KEY CHECK (length(username) BETWEEN 1 AND 100),
    role                 TEXT    NOT NULL CHECK (role IN ('viewer', 'user', 'admin')),
    password_hash        TEXT    NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
    source               TEXT    NOT NULL CHECK (source IN ('config', 'env', 'local')),
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    disabled             INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    CHECK (source = 'local' OR must_change_password = 0)
) WITHOUT ROWID;

-- Every bearer token issued by GET /auth, so admins can list and revoke them one by one.
CREATE TABLE issued_tokens (
    jti        TEXT    PRIMARY KEY CHECK (length(jti) BETWEEN 16 AND 64),
    username   TEXT    NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    peer       TEXT,
    revoked_at INTEGER,
    revoked_by TEXT,
    CHECK (expires_at > issued_at),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
) WITHOUT ROWID;
CREATE INDEX issued_tokens_by_user ON issued_tokens (username, issued_at);
CREATE INDEX issued_tokens_by_expiry ON issued_tokens (expires_at);

-- Long-lived keys for apps. Only a SHA-256 of the secret is stored; the key is shown once at creation.
CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY CHECK (length(id) BETWEEN 8 AND 32),
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'user', 'admin')),
    secret_sha256 BLOB    NOT NULL CHECK (length(secret_sha256) = 32),
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
) WITHOUT ROWID;
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- One row. `version` moves on every change that can invalidate a credential (triggers below), so a
-- running server notices changes made by the admin CLI from another process on the very next request.
CREATE TABLE auth_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    version        INTEGER NOT NULL,
    key_generation INTEGER NOT NULL
);
INSERT INTO auth_state (id, version, key_generation) VALUES (1, 1, 1);

CREATE TRIGGER users_bump_insert AFTER INSERT ON users
BEGIN UPDATE auth_state SET version = version + 1; END;
CREATE TRIGGER users_bump_update AFTER UPDATE ON users
BEGIN UPDATE auth_state SET version = version + 1; END;
CREATE TRIGGER users_bump_delete AFTER DELETE ON users
BEGIN UPDATE auth_state SET version = version + 1; END;
CREATE TRIGGER tokens_bump_revoke AFTER UPDATE OF revoked_at ON issued_tokens
BEGIN UPDATE auth_state SET version = version + 1; END;
CREATE TRIGGER api_keys_bump_insert AFTER INSERT ON api_keys
BEGIN UPDATE auth_state SET version = version + 1; END;
CREATE TRIGGER api_keys_bump_update AFTER UPDATE ON api_keys
BEGIN UPDATE auth_state SET version = version + 1; END;

-- Security-relevant events, written in the same transaction as the change they record.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    action TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    actor  TEXT,
    target TEXT,
    peer   TEXT,
    detail TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_action ON audit_log (action, at);
CREATE INDEX audit_log_by_actor ON audit_log (actor, at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
