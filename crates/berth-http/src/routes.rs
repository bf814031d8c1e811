//! Every management route with its OpenAPI operations: the router and
//! `/api/openapi.json` come from this one list.

use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};

use crate::api;
use crate::health;
use crate::openapi::{
    Api, Auth, Op, Shape, array, boolean, integer, message, nullable, number, obj, op, record, string,
};

// Shapes shared by several operations.

fn user_000() -> Value {
    obj(
        &[("id", integer()), ("username", string()), ("role", string()), ("is_active", boolean())],
        &["id", "username", "role"],
    )
}

fn user_004() -> Value {
    obj(
        &[
            ("id", integer()),
            ("username", string()),
            ("email", nullable(string())),
            ("role", string()),
            ("is_active", boolean()),
            ("created_at", string()),
            ("last_login", nullable(string())),
        ],
        &["id", "username", "role", "created_at"],
    )
}

fn token() -> Value {
    obj(
        &[
            ("id", integer()),
            ("name", string()),
            ("permissions", array(string())),
            ("repositories", array(string())),
            ("created_at", string()),
            ("expires_at", nullable(string())),
            ("last_used", nullable(string())),
        ],
        &["id", "name", "permissions", "created_at"],
    )
}

fn pagination() -> Value {
    record(&[("page", integer()), ("limit", integer()), ("total", integer()), ("pages", integer())])
}

/// Seed 004's generic list (API.md C2).
fn list_of(item: Value) -> Value {
    record(&[("data", array(item)), ("pagination", pagination())])
}

fn project() -> Value {
    obj(
        &[
            ("name", string()),
            ("visibility", string()),
            ("description", nullable(string())),
            ("created_at", string()),
            ("members", array(obj(&[("user_id", integer()), ("username", string()), ("role", string())], &[]))),
        ],
        &["name", "visibility"],
    )
}

fn upstream() -> Value {
    obj(
        &[
            ("name", string()),
            ("url", string()),
            ("priority", integer()),
            ("enabled", boolean()),
            ("namespace", string()),
            ("mirror", boolean()),
            ("username", nullable(string())),
            ("has_password", boolean()),
        ],
        &["name", "url", "priority", "enabled"],
    )
}

fn upstream_body(name_required: bool) -> Value {
    let required: &[&str] = if name_required { &["name", "url"] } else { &[] };
    obj(
        &[
            ("name", string()),
            ("url", string()),
            ("priority", integer()),
            ("enabled", boolean()),
            ("namespace", string()),
            ("mirror", boolean()),
            ("library_prefix", boolean()),
            ("username", string()),
            ("password", string()),
            ("timeout_secs", integer()),
            ("max_concurrent", integer()),
            ("max_size", integer()),
        ],
        required,
    )
}

fn audit_000() -> Value {
    obj(
        &[
            ("id", integer()),
            ("timestamp", string()),
            ("level", string()),
            ("event", string()),
            ("user_id", nullable(integer())),
            ("username", string()),
            ("ip_address", string()),
            ("resource", string()),
            ("action", string()),
            ("status", string()),
            ("blockchain_hash", string()),
        ],
        &["id", "timestamp", "event", "action", "blockchain_hash"],
    )
}

fn webhook() -> Value {
    obj(
        &[
            ("id", integer()),
            ("url", string()),
            ("events", array(string())),
            ("repository", string()),
            ("format", string()),
            ("enabled", boolean()),
            ("signed", boolean()),
            ("created_at", string()),
        ],
        &["id", "url", "events", "repository", "created_at"],
    )
}

fn webhook_body(create: bool) -> Value {
    let required: &[&str] = if create { &["url", "events"] } else { &[] };
    let mut schema = obj(
        &[
            ("url", string()),
            ("events", array(string())),
            ("repository", string()),
            ("secret", string()),
            ("format", json!({"enum": ["berth", "cloudevents"]})),
            ("enabled", boolean()),
        ],
        required,
    );
    schema["additionalProperties"] = json!(false);
    schema
}

fn delivery() -> Value {
    obj(
        &[
            ("id", integer()),
            ("webhook_id", integer()),
            ("event_id", integer()),
            ("delivery", string()),
            ("state", json!({"enum": ["pending", "delivered", "failed"]})),
            ("attempts", integer()),
            ("created_at", string()),
            ("last_status", nullable(integer())),
            ("last_error", nullable(string())),
        ],
        &["id", "webhook_id", "event_id", "delivery", "state", "attempts"],
    )
}

fn lock_status() -> Value {
    obj(
        &[
            ("is_locked", boolean()),
            ("lock_reason", string()),
            ("lock_type", string()),
            ("locked_at", string()),
            ("locked_by_ip", string()),
            ("locked_by_user", string()),
            ("require_manual", boolean()),
        ],
        &["is_locked"],
    )
}

fn allowlist() -> Value {
    record(&[("enabled", boolean()), ("cidrs", array(string()))])
}

fn image() -> Value {
    record(&[
        ("name", string()),
        ("tag", string()),
        ("digest", string()),
        ("size", integer()),
        ("created_at", string()),
    ])
}

fn image_page() -> Value {
    record(&[
        ("images", array(image())),
        ("total", integer()),
        ("page", integer()),
        ("page_size", integer()),
        ("total_pages", integer()),
    ])
}

fn system_info() -> Value {
    let s = &["os", "os_version", "arch", "hostname", "docker_version", "containerd_version"];
    let n = &["cpu_cores", "memory_total", "disk_total", "disk_free"];
    let props: Vec<(&str, Value)> = s.iter().map(|k| (*k, string())).chain(n.iter().map(|k| (*k, integer()))).collect();
    let required: Vec<&str> = s.iter().chain(n.iter()).copied().collect();
    obj(&props, &required)
}

fn repository() -> Value {
    obj(
        &[
            ("name", string()),
            ("description", nullable(string())),
            ("visibility", json!({"enum": ["public", "private"]})),
            ("owner", nullable(string())),
            ("created_at", string()),
            ("updated_at", string()),
            ("size", integer()),
            ("pull_count", integer()),
            (
                "tags",
                array(record(&[
                    ("name", string()),
                    ("digest", string()),
                    ("size", integer()),
                    ("created_at", string()),
                ])),
            ),
        ],
        &["name", "visibility", "created_at", "size", "pull_count", "tags"],
    )
}

fn immutability() -> Value {
    let rule = obj(
        &[("id", integer()), ("repository", string()), ("pattern", string()), ("created_at", string())],
        &["id", "repository", "pattern"],
    );
    record(&[("project", string()), ("rules", array(rule))])
}

fn retention_rule() -> Value {
    let n = || nullable(integer());
    let t = || nullable(string());
    let mut rule = obj(
        &[
            ("repository", string()),
            ("keep_last", n()),
            ("keep_tags", t()),
            ("keep_semver", t()),
            ("keep_pulled_within_days", n()),
        ],
        &[],
    );
    rule["additionalProperties"] = json!(false);
    rule
}

fn retention() -> Value {
    record(&[
        ("project", string()),
        ("enabled", boolean()),
        ("untagged_hours", nullable(integer())),
        ("rules", array(retention_rule())),
        ("updated_at", nullable(string())),
    ])
}

fn retention_report() -> Value {
    let tag = record(&[("repository", string()), ("tag", string()), ("digest", string())]);
    let manifest = record(&[("repository", string()), ("digest", string())]);
    record(&[
        ("dry_run", boolean()),
        ("deleted_tags", array(tag.clone())),
        ("deleted_manifests", array(manifest)),
        ("protected", array(tag)),
    ])
}

fn quota() -> Value {
    let n = || nullable(integer());
    record(&[
        ("project", string()),
        (
            "limits",
            record(&[("storage_bytes", n()), ("storage_soft_bytes", n()), ("repositories", n()), ("tags", n())]),
        ),
        (
            "usage",
            record(&[
                ("physical_bytes", integer()),
                ("logical_bytes", integer()),
                ("repositories", integer()),
                ("tags", integer()),
            ]),
        ),
        ("soft_limit_exceeded", boolean()),
        ("updated_at", nullable(string())),
    ])
}

fn gc_run() -> Value {
    let counters = [
        ("examined", integer()),
        ("manifests_deleted", integer()),
        ("links_deleted", integer()),
        ("blobs_deleted", integer()),
        ("bytes_reclaimed", integer()),
    ];
    let mut fields = vec![
        ("id", integer()),
        ("node", string()),
        ("trigger", string()),
        ("dry_run", boolean()),
        ("grace_seconds", integer()),
        ("state", string()),
        ("started_at", string()),
        ("updated_at", string()),
        ("finished_at", nullable(string())),
        ("error", nullable(string())),
    ];
    fields.extend(counters);
    record(&fields)
}

fn gc_status() -> Value {
    let queue =
        record(&[("manifests", integer()), ("links", integer()), ("blobs", integer()), ("tombstones", integer())]);
    let settings = record(&[
        ("grace_seconds", integer()),
        ("interval_seconds", integer()),
        ("delete_untagged", boolean()),
        ("keep_referrers", boolean()),
    ]);
    record(&[("queue", queue), ("settings", settings), ("running", boolean()), ("runs", array(gc_run()))])
}

fn gc_plan() -> Value {
    let pair = record(&[("repository", string()), ("digest", string())]);
    record(&[
        ("dry_run", boolean()),
        ("run_id", integer()),
        ("examined", integer()),
        ("manifests_deleted", integer()),
        ("links_deleted", integer()),
        ("blobs_deleted", integer()),
        ("bytes_reclaimed", integer()),
        ("manifests", array(pair.clone())),
        ("links", array(pair)),
        ("blobs", array(record(&[("digest", string()), ("size", integer())]))),
        ("truncated", boolean()),
    ])
}

fn security(o: Op) -> Op {
    o.tag("security").shape(Shape::Security)
}

fn ghost(o: Op) -> Op {
    o.tag("ghostdock").shape(Shape::GhostDock)
}

fn management(o: Op) -> Op {
    o.tag("management").shape(Shape::Management)
}

/// The management routes, with their OpenAPI document when `documented`.
pub(crate) fn management_api(documented: bool) -> Api {
    let token_scope = || "the caller's own tokens";
    Api::new(documented)
        .route(
            "/health",
            get(health::health),
            [management(op("get", "health", "Health (seed 000)"))
                .ok_data(record(&[("status", string()), ("version", string())]))],
        )
        .route(
            "/api/version",
            get(health::version),
            [management(op("get", "version", "Version and full version with commit and date"))
                .ok_data(record(&[("version", string()), ("full_version", string())]))],
        )
        .route(
            "/api/openapi.json",
            get(crate::openapi_document),
            [op("get", "openapi", "This document")
                .tag("management")
                .shape(Shape::Plain)
                .ok(200, json!({"type": "object"}))],
        )
        .route(
            "/api/v1/health",
            get(api::monitoring::health),
            [ghost(op("get", "v1Health", "Database, storage and auth checked for real; 503 when one is down")).ok(
                200,
                {
                    let word = || json!({"enum": ["healthy", "unhealthy"]});
                    record(&[
                        ("status", word()),
                        ("version", string()),
                        (
                            "services",
                            obj(
                                &[("database", word()), ("storage", word()), ("auth", word())],
                                &["database", "storage", "auth"],
                            ),
                        ),
                        (
                            "metrics",
                            obj(
                                &[
                                    ("repositories", integer()),
                                    ("images", integer()),
                                    ("users", integer()),
                                    ("storage_used", string()),
                                ],
                                &["repositories", "images", "users", "storage_used"],
                            ),
                        ),
                    ])
                },
            )],
        )
        .route(
            "/api/v1/metrics",
            get(api::monitoring::metrics),
            [ghost(op("get", "v1Metrics", "Request, registry, storage and latency figures since start"))
                .auth(Auth::Admin)
                .ok(
                    200,
                    record(&[
                        ("timestamp", string()),
                        (
                            "requests",
                            obj(
                                &[("total", integer()), ("success", integer()), ("errors", integer())],
                                &["total", "success", "errors"],
                            ),
                        ),
                        (
                            "registry",
                            obj(
                                &[
                                    ("pulls", integer()),
                                    ("pushes", integer()),
                                    ("repositories", integer()),
                                    ("images", integer()),
                                ],
                                &["pulls", "pushes", "repositories", "images"],
                            ),
                        ),
                        (
                            "storage",
                            obj(
                                &[("total_size", integer()), ("blob_count", integer()), ("manifest_count", integer())],
                                &["total_size", "blob_count", "manifest_count"],
                            ),
                        ),
                        (
                            "performance",
                            obj(
                                &[
                                    ("avg_response_time", integer()),
                                    ("p95_response_time", integer()),
                                    ("p99_response_time", integer()),
                                ],
                                &["avg_response_time", "p95_response_time", "p99_response_time"],
                            ),
                        ),
                    ]),
                )],
        )
        .route(
            "/metrics",
            get(crate::metrics),
            [op("get", "prometheusMetrics", "Prometheus metrics (text format)")
                .tag("management")
                .shape(Shape::Plain)
                .raw(200, "text/plain")
                .empty(404)],
        )
        // Security API (seed 000 §6).
        .route(
            "/api/v1/auth/login",
            post(api::security::login),
            [security(op("post", "login", "Log in; sets the session and CSRF cookies"))
                .body(obj(
                    &[
                        ("username", string()),
                        ("password", string()),
                        ("captcha_id", string()),
                        ("captcha", string()),
                        ("otp", string()),
                    ],
                    &["username", "password"],
                ))
                .ok(
                    200,
                    obj(
                        &[
                            ("user", user_000()),
                            ("token", string()),
                            ("session", obj(&[("id", string()), ("ip", string())], &["id"])),
                            ("must_change_password", boolean()),
                            ("lock_warning", boolean()),
                        ],
                        &["user", "token", "session"],
                    ),
                )],
        )
        .route(
            "/api/v1/auth/logout",
            post(api::security::logout),
            [security(op("post", "logout", "Log out (revokes the session)")).auth(Auth::User).ok(200, message(&[]))],
        )
        .route(
            "/api/v1/auth/verify-token",
            post(api::security::verify_token),
            [security(op("post", "verifyToken", "Checks a JWT or personal access token"))
                .body(record(&[("token", string())]))
                .ok(200, obj(&[("valid", boolean()), ("user", obj(&[], &[]))], &["valid"]))],
        )
        .route(
            "/api/v1/auth/me",
            get(api::security::me),
            [security(op("get", "me", "The caller")).auth(Auth::User).ok(200, record(&[("user", user_000())]))],
        )
        .route(
            "/api/v1/auth/heartbeat",
            get(api::security::heartbeat),
            [security(op("get", "heartbeat", "Keeps a session alive"))
                .auth(Auth::User)
                .ok(200, record(&[("status", string()), ("timestamp", integer())]))],
        )
        .route(
            "/api/v1/auth/captcha",
            get(api::security::captcha),
            [security(op("get", "captcha", "A captcha for logins after failures"))
                .ok(200, record(&[("captcha_id", string()), ("image", string()), ("expires_in", integer())]))],
        )
        .route(
            "/api/v1/auth/2fa/setup",
            post(api::twofactor::setup),
            [security(op("post", "twoFactorSetup", "Starts TOTP enrolment"))
                .auth(Auth::User)
                .ok(200, record(&[("secret", string()), ("otpauth_url", string())]))],
        )
        .route(
            "/api/v1/auth/2fa/enable",
            post(api::twofactor::enable),
            [security(op("post", "twoFactorEnable", "Confirms TOTP with a code"))
                .auth(Auth::User)
                .body(record(&[("code", string())]))
                .ok(200, message(&[("recovery_codes", array(string()))]))],
        )
        .route(
            "/api/v1/auth/2fa/disable",
            post(api::twofactor::disable),
            [security(op("post", "twoFactorDisable", "Turns TOTP off (own: password and code; admin: user_id)"))
                .auth(Auth::User)
                .body(obj(&[("password", string()), ("code", string()), ("user_id", integer())], &[]))
                .ok(200, message(&[]))],
        )
        .route(
            "/api/v1/system/allowlist",
            get(api::allowlist::get_allowlist).put(api::allowlist::put_allowlist),
            [
                security(op("get", "getAllowlist", "Admin IP allow-list")).auth(Auth::Admin).ok(200, allowlist()),
                security(op("put", "putAllowlist", "Replaces the admin IP allow-list"))
                    .auth(Auth::Admin)
                    .body(allowlist())
                    .ok(200, allowlist()),
            ],
        )
        .route(
            "/api/v1/system/gc",
            get(api::gc::status).post(api::gc::run),
            [
                ghost(op("get", "gcStatus", "Garbage collection: queue, settings, recent runs"))
                    .auth(Auth::Admin)
                    .ok(200, gc_status()),
                ghost(op("post", "gcRun", "Starts a garbage collection (202), or previews one with dry_run (200)"))
                    .auth(Auth::Admin)
                    .optional_body(obj(&[("dry_run", boolean()), ("grace_seconds", integer())], &[]))
                    .ok(200, gc_plan())
                    .ok(202, record(&[("run_id", integer()), ("state", string())])),
            ],
        )
        .route(
            "/api/v1/system/lock/status",
            get(api::security::lock_status),
            [security(op("get", "lockStatus", "Whether the system is locked")).ok(200, lock_status())],
        )
        .route(
            "/api/v1/system/lock/unlock",
            post(api::security::unlock),
            [security(op("post", "unlock", "Unlocks with an admin password or the recovery key"))
                .body(obj(&[("password", string()), ("recovery_key", string())], &[]))
                .ok(200, message(&[]))],
        )
        .route(
            "/api/v1/system/lock/lock",
            post(api::security::lock),
            [security(op("post", "lock", "Locks the system"))
                .auth(Auth::Admin)
                .body(record(&[("reason", string())]))
                .ok(200, message(&[]))],
        )
        .route(
            "/api/v1/audit/logs",
            get(api::audit::logs),
            [security(op("get", "auditLogs", "Audit log, newest first"))
                .auth(Auth::Admin)
                .paged("page_size", 20)
                .query("event_type", string(), "snake_case event")
                .query("start_date", string(), "RFC 3339 or YYYY-MM-DD")
                .query("end_date", string(), "RFC 3339 or YYYY-MM-DD")
                .ok(
                    200,
                    record(&[
                        ("logs", array(audit_000())),
                        ("total", integer()),
                        ("page", integer()),
                        ("page_size", integer()),
                    ]),
                )],
        )
        .route(
            "/api/v1/audit/logs/export",
            get(api::audit::export),
            [security(op("get", "auditExport", "Audit log as a JSON file, oldest first"))
                .auth(Auth::Admin)
                .query("start_date", string(), "RFC 3339 or YYYY-MM-DD")
                .query("end_date", string(), "RFC 3339 or YYYY-MM-DD")
                .ok(200, array(audit_000()))],
        )
        // Seed 004 (§7).
        .route(
            "/api/v1/audit",
            get(api::audit::ghost_audit),
            [ghost(op("get", "audit", "Audit log (seed 004 view)"))
                .auth(Auth::Admin)
                .paged("limit", 50)
                .query("user", string(), "user name")
                .query("action", string(), "dotted action")
                .query("from", string(), "RFC 3339 or YYYY-MM-DD")
                .query("to", string(), "RFC 3339 or YYYY-MM-DD")
                .ok(
                    200,
                    obj(
                        &[("logs", array(obj(&[], &["id", "timestamp", "user", "action"]))), ("total", integer())],
                        &["logs", "total", "page", "limit"],
                    ),
                )],
        )
        .route(
            "/api/v1/users",
            get(api::users::list_users).post(api::users::create_user),
            [
                ghost(op("get", "listUsers", "Users")).auth(Auth::Admin).paged("limit", 50).ok(
                    200,
                    record(&[
                        ("users", array(user_004())),
                        ("total", integer()),
                        ("page", integer()),
                        ("limit", integer()),
                    ]),
                ),
                ghost(op("post", "createUser", "Creates a user"))
                    .auth(Auth::Admin)
                    .body(obj(
                        &[("username", string()), ("email", string()), ("password", string()), ("role", string())],
                        &["username", "password"],
                    ))
                    .ok(201, user_004()),
            ],
        )
        .route(
            "/api/v1/users/{id}",
            put(api::users::update_user).delete(api::users::delete_user),
            [
                ghost(op("put", "updateUser", "Changes a user (admins: anything; users: own email and password)"))
                    .auth(Auth::User)
                    .body(obj(
                        &[
                            ("email", string()),
                            ("role", string()),
                            ("password", string()),
                            ("current_password", string()),
                            ("is_active", boolean()),
                        ],
                        &[],
                    ))
                    .ok(200, user_004()),
                ghost(op("delete", "deleteUser", "Deletes a user")).auth(Auth::Admin).empty(204),
            ],
        )
        .route(
            "/api/v1/tokens",
            get(api::users::list_tokens).post(api::users::create_token),
            [
                ghost(op("get", "listTokens", token_scope()))
                    .auth(Auth::User)
                    .paged("limit", 50)
                    .ok(200, list_of(token())),
                ghost(op("post", "createToken", "A personal access token, shown once"))
                    .auth(Auth::User)
                    .body(obj(
                        &[
                            ("name", string()),
                            ("permissions", array(string())),
                            ("repositories", array(string())),
                            ("expires_at", string()),
                        ],
                        &["name", "permissions"],
                    ))
                    .ok(201, {
                        let mut t = token();
                        t["properties"]["token"] = string();
                        t["required"] = json!(["id", "name", "permissions", "token"]);
                        t
                    }),
            ],
        )
        .route(
            "/api/v1/tokens/{id}",
            delete(api::users::delete_token),
            [ghost(op("delete", "deleteToken", "Revokes one of the caller's tokens")).auth(Auth::User).empty(204)],
        )
        .route(
            "/api/v1/projects/{name}",
            get(api::projects::get_project).put(api::projects::put_project),
            [
                ghost(op("get", "getProject", "A project with its members")).auth(Auth::User).ok(200, project()),
                ghost(op("put", "putProject", "Sets visibility and description (admins may create)"))
                    .auth(Auth::User)
                    .body(obj(
                        &[("visibility", json!({"enum": ["public", "private"]})), ("description", string())],
                        &[],
                    ))
                    .ok(200, project()),
            ],
        )
        .route(
            "/api/v1/projects/{name}/members/{username}",
            put(api::projects::put_member).delete(api::projects::delete_member),
            [
                ghost(op("put", "putMember", "Adds a member or changes their role"))
                    .auth(Auth::User)
                    .body(record(&[("role", json!({"enum": ["owner", "maintainer", "developer", "guest"]}))]))
                    .ok(200, project()),
                ghost(op("delete", "deleteMember", "Removes a member")).auth(Auth::User).empty(204),
            ],
        )
        .route(
            "/api/v1/projects/{name}/quota",
            get(api::quota::get_quota).put(api::quota::put_quota),
            [
                ghost(op("get", "getQuota", "A project's limits and exact usage")).auth(Auth::User).ok(200, quota()),
                ghost(op("put", "putQuota", "Replaces a project's limits (admin); null removes one"))
                    .auth(Auth::Admin)
                    .body({
                        let n = || nullable(integer());
                        let mut body = obj(
                            &[
                                ("storage_bytes", n()),
                                ("storage_soft_bytes", n()),
                                ("repositories", n()),
                                ("tags", n()),
                            ],
                            &[],
                        );
                        body["additionalProperties"] = json!(false);
                        body
                    })
                    .ok(200, quota()),
            ],
        )
        .route(
            "/api/v1/projects/{name}/immutability",
            get(api::immutability::get_rules).put(api::immutability::put_rules),
            [
                ghost(op("get", "getImmutability", "Tag immutability rules of a project"))
                    .auth(Auth::User)
                    .ok(200, immutability()),
                ghost(op("put", "putImmutability", "Replaces the rules (project owner, admin)"))
                    .auth(Auth::User)
                    .body({
                        let mut rule = obj(&[("repository", string()), ("pattern", string())], &["pattern"]);
                        rule["additionalProperties"] = json!(false);
                        record(&[("rules", array(rule))])
                    })
                    .ok(200, immutability()),
            ],
        )
        .route(
            "/api/v1/projects/{name}/retention",
            get(api::retention::get_policy).put(api::retention::put_policy),
            [
                ghost(op("get", "getRetention", "Retention policy of a project")).auth(Auth::User).ok(200, retention()),
                ghost(op("put", "putRetention", "Replaces the retention policy (project owner, admin)"))
                    .auth(Auth::User)
                    .body({
                        let mut body = obj(
                            &[
                                ("enabled", boolean()),
                                ("untagged_hours", nullable(integer())),
                                ("rules", array(retention_rule())),
                            ],
                            &["enabled", "rules"],
                        );
                        body["additionalProperties"] = json!(false);
                        body
                    })
                    .ok(200, retention()),
            ],
        )
        .route(
            "/api/v1/projects/{name}/retention/run",
            post(api::retention::run),
            [ghost(op(
                "post",
                "runRetention",
                "Applies the retention policy now, or previews it (project owner, admin)",
            ))
            .auth(Auth::User)
            .query(
                "dry_run",
                boolean(),
                "true: only list what would be deleted (this or the body's dry_run is required)",
            )
            .body(record(&[("dry_run", boolean())]))
            .ok(200, retention_report())],
        )
        .route(
            "/api/v1/webhooks",
            get(api::webhooks::list).post(api::webhooks::create),
            [
                ghost(op("get", "listWebhooks", "Webhooks"))
                    .auth(Auth::Admin)
                    .paged("limit", 50)
                    .ok(200, list_of(webhook())),
                ghost(op("post", "createWebhook", "Creates a webhook"))
                    .auth(Auth::Admin)
                    .body(webhook_body(true))
                    .ok(201, webhook()),
            ],
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(api::webhooks::get).put(api::webhooks::update).delete(api::webhooks::delete),
            [
                ghost(op("get", "getWebhook", "One webhook")).auth(Auth::Admin).ok(200, webhook()),
                ghost(op("put", "updateWebhook", "Changes the given fields"))
                    .auth(Auth::Admin)
                    .body(webhook_body(false))
                    .ok(200, webhook()),
                ghost(op("delete", "deleteWebhook", "Deletes a webhook and its history")).auth(Auth::Admin).empty(204),
            ],
        )
        .route(
            "/api/v1/webhooks/{id}/test",
            post(api::webhooks::test),
            [ghost(op("post", "testWebhook", "Sends a ping now")).auth(Auth::Admin).ok(
                200,
                obj(
                    &[
                        ("delivered", boolean()),
                        ("status_code", integer()),
                        ("error", string()),
                        ("delivery_id", integer()),
                    ],
                    &["delivered", "status_code", "error"],
                ),
            )],
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(api::webhooks::deliveries),
            [ghost(op("get", "webhookDeliveries", "Delivery history, newest first"))
                .auth(Auth::Admin)
                .paged("limit", 50)
                .ok(200, list_of(delivery()))],
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery}",
            get(api::webhooks::delivery),
            [ghost(op("get", "webhookDelivery", "One delivery with every attempt")).auth(Auth::Admin).ok(200, {
                let mut d = delivery();
                d["properties"]["attempt_log"] = array(obj(
                    &[
                        ("attempt", integer()),
                        ("at", string()),
                        ("status", nullable(integer())),
                        ("latency_ms", integer()),
                    ],
                    &["attempt", "at", "latency_ms"],
                ));
                d
            })],
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(api::webhooks::redeliver),
            [ghost(op("post", "redeliver", "Queues the event again (same delivery id)"))
                .auth(Auth::Admin)
                .ok(202, delivery())],
        )
        // Seed 000 images and system (§5.1, §5.3).
        .route(
            "/api/images",
            get(api::images::list_images),
            [management(op("get", "listImages", "Pullable repository:tag pairs, by name and tag"))
                .auth(Auth::User)
                .paged("page_size", 10)
                .ok_data(image_page())],
        )
        .route(
            "/api/images/search",
            get(api::images::search_images),
            [management(op("get", "searchImages", "Case-insensitive substring search of names and tags"))
                .auth(Auth::User)
                .query_required("q", string(), "substring of a repository name or tag")
                .paged("page_size", 10)
                .ok_data(image_page())],
        )
        .route(
            "/api/images/{*path}",
            get(api::images::get_image).delete(api::images::delete_image),
            [
                management(op(
                    "get",
                    "getImage",
                    "A repository's tags with layers ({name}), or one tag with its pull command ({name}/{tag})",
                ))
                .auth(Auth::User)
                .ok_data(obj(
                    &[("name", string()), ("tags", array(image())), ("image", image()), ("pull_cmd", string())],
                    &[],
                )),
                management(op("delete", "deleteImage", "Removes a tag ({name}/{tag})"))
                    .auth(Auth::User)
                    .ok_data(message(&[("name", string()), ("tag", string())])),
            ],
        )
        .route(
            "/api/system/info",
            get(api::system::info),
            [management(op("get", "systemInfo", "Host facts (cached)")).auth(Auth::Admin).ok_data(system_info())],
        )
        .route(
            "/api/system/refresh",
            get(api::system::refresh),
            [management(op("get", "systemRefresh", "Host facts, collected again"))
                .auth(Auth::Admin)
                .ok_data(system_info())],
        )
        .route(
            "/api/system/compatibility",
            get(api::system::compatibility),
            [management(op("get", "systemCompatibility", "Checks that matter to berth")).auth(Auth::Admin).ok_data(
                record(&[("compatible", boolean()), ("warnings", array(string())), ("errors", array(string()))]),
            )],
        )
        .route(
            "/api/v1/repositories/{*repository}",
            get(api::repositories::get_repository)
                .put(api::repositories::put_repository)
                .delete(api::repositories::delete_repository),
            [
                ghost(op("get", "getRepository", "A repository (the whole remainder is its name)"))
                    .auth(Auth::User)
                    .ok(200, repository()),
                ghost(op("put", "putRepository", "Sets description and visibility"))
                    .auth(Auth::User)
                    .body({
                        let mut b = obj(
                            &[("description", string()), ("visibility", json!({"enum": ["public", "private"]}))],
                            &[],
                        );
                        b["additionalProperties"] = json!(false);
                        b
                    })
                    .ok(200, repository()),
                ghost(op("delete", "deleteRepository", "Deletes every tag and manifest")).auth(Auth::User).empty(204),
            ],
        )
        // Seed 000 accelerator (§5.2).
        .route(
            "/api/accel/upstreams",
            get(api::accel::list_upstreams).post(api::accel::add_upstream),
            [
                management(op("get", "listUpstreams", "Upstream registries"))
                    .auth(Auth::Admin)
                    .ok_data(record(&[("upstreams", array(upstream())), ("count", integer())])),
                management(op("post", "addUpstream", "Adds an upstream"))
                    .auth(Auth::Admin)
                    .body(upstream_body(true))
                    .ok_data(upstream()),
            ],
        )
        .route(
            "/api/accel/upstreams/{name}",
            put(api::accel::update_upstream).delete(api::accel::delete_upstream),
            [
                management(op("put", "updateUpstream", "Changes an upstream"))
                    .auth(Auth::Admin)
                    .body(upstream_body(false))
                    .ok_data(upstream()),
                management(op("delete", "deleteUpstream", "Removes an upstream"))
                    .auth(Auth::Admin)
                    .ok_data(message(&[])),
            ],
        )
        .route(
            "/api/accel/upstreams/{name}/enable",
            post(api::accel::enable_upstream),
            [management(op("post", "enableUpstream", "Enables an upstream")).auth(Auth::Admin).ok_data(upstream())],
        )
        .route(
            "/api/accel/upstreams/{name}/disable",
            post(api::accel::disable_upstream),
            [management(op("post", "disableUpstream", "Disables an upstream")).auth(Auth::Admin).ok_data(upstream())],
        )
        .route(
            "/api/accel/upstreams/{name}/health",
            get(api::accel::upstream_health),
            [management(op("get", "upstreamHealth", "Checks GET {url}/v2/")).auth(Auth::Admin).ok_data(record(&[
                ("name", string()),
                ("healthy", boolean()),
                ("status", string()),
            ]))],
        )
        .route(
            "/api/accel/cache",
            delete(api::accel::clear_cache),
            [management(op("delete", "clearCache", "Empties the cache")).auth(Auth::Admin).ok_data(message(&[]))],
        )
        .route(
            "/api/accel/cache/stats",
            get(api::accel::cache_stats),
            [management(op("get", "cacheStats", "Cache size and hit rate")).auth(Auth::Admin).ok_data(record(&[
                ("total_size", integer()),
                ("max_size", integer()),
                ("entry_count", integer()),
                ("hit_count", integer()),
                ("miss_count", integer()),
                ("hit_rate", number()),
            ]))],
        )
        .route(
            "/api/accel/cache/entries",
            get(api::accel::cache_entries),
            [management(op("get", "cacheEntries", "Cached blobs, least recently used first"))
                .auth(Auth::Admin)
                .query("page", integer(), "page number")
                .query("page_size", integer(), "entries per page (at most 1000)")
                .ok_data(record(&[
                    (
                        "entries",
                        array(obj(
                            &[
                                ("digest", string()),
                                ("size", integer()),
                                ("last_access", string()),
                                ("access_count", integer()),
                            ],
                            &["digest", "size"],
                        )),
                    ),
                    ("count", integer()),
                ]))],
        )
        .route(
            "/api/accel/cache/{digest}",
            delete(api::accel::delete_entry),
            [management(op("delete", "deleteCacheEntry", "Drops one cached blob"))
                .auth(Auth::Admin)
                .ok_data(message(&[("digest", string())]))],
        )
        .route(
            "/api/accel/cache/{digest}/pin",
            put(api::accel::pin_entry).delete(api::accel::pin_entry),
            [
                management(op("put", "pinCacheEntry", "Pins a cached blob (never evicted)"))
                    .auth(Auth::Admin)
                    .ok_data(record(&[("digest", string()), ("pinned", boolean())])),
                management(op("delete", "unpinCacheEntry", "Unpins a cached blob"))
                    .auth(Auth::Admin)
                    .ok_data(record(&[("digest", string()), ("pinned", boolean())])),
            ],
        )
        .route(
            "/api/accel/pull/{*path}",
            get(api::accel::pull),
            [management(op(
                "get",
                "accelPull",
                "Raw manifest or blob through the cache: {name}/manifests/{ref} or {name}/blobs/{digest}",
            ))
            .auth(Auth::User)
            .raw(200, "*/*")],
        )
}
