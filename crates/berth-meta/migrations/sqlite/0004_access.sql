-- Access control: users, projects and their members, personal access tokens,
-- login sessions, the chained audit log and small system settings.
CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    email                TEXT,
    password_hash        TEXT    NOT NULL,
    role                 TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    is_active            INTEGER NOT NULL DEFAULT 1,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    totp_secret          TEXT,
    totp_enabled         INTEGER NOT NULL DEFAULT 0,
    recovery_codes       TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_login           INTEGER
);

-- A project is the first segment of a repository name.
CREATE TABLE projects (
    name        TEXT    PRIMARY KEY,
    visibility  TEXT    NOT NULL DEFAULT 'private' CHECK (visibility IN ('public', 'private')),
    description TEXT    NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE project_members (
    project TEXT    NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT    NOT NULL CHECK (role IN ('owner', 'maintainer', 'developer', 'guest')),
    PRIMARY KEY (project, user_id)
);
CREATE INDEX project_members_user ON project_members(user_id);

-- Personal access tokens: only a SHA-256 of the token is kept; `lookup` is the
-- clear prefix used to find the row.
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    lookup       TEXT    NOT NULL UNIQUE,
    hash         TEXT    NOT NULL,
    permissions  TEXT    NOT NULL,
    repositories TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used    INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ip         TEXT    NOT NULL,
    csrf_hash  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Tamper-evident: hash = sha256(prev_hash || canonical entry), ids dense.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    timestamp  TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    level      TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    user_id    INTEGER,
    username   TEXT    NOT NULL,
    ip_address TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_event ON audit_log(event, at);

-- The chain head, one row: updating it inside the writing transaction serialises
-- audit writers (on PostgreSQL, through the row lock).
CREATE TABLE audit_head (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    hash    TEXT    NOT NULL
);
INSERT INTO audit_head (one, last_id, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Small named values: the system lock, the admin allow-list, the recovery key hash.
CREATE TABLE settings (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Failed logins, counted per account and per IP over a window.
CREATE TABLE login_failures (
    id       INTEGER PRIMARY KEY,
    username TEXT    NOT NULL,
    ip       TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX login_failures_user ON login_failures(username, at);
CREATE INDEX login_failures_ip ON login_failures(ip, at);
