//! The OpenAPI 3.1 document of the management surfaces, built from the same
//! calls that build the router.
//!
//! Every management route is registered through [`Api::route`] with the
//! operations it serves, so a route cannot exist without its documentation
//! (the `/v2` registry protocol and the `/auth` token endpoint are specified by
//! OCI and Docker and are left out). The integration test `openapi::` checks
//! the other direction: every documented operation is really served.

use axum::Router;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

use crate::AppState;

/// Which error envelope an operation answers with (API.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Seed 000: `{"success":false,"error":{"code","message","details"},"timestamp"}`.
    Management,
    /// Seed 000 security API: `{"error":"<message>","code":"<code>"}`.
    Security,
    /// Seed 004: `{"error":{"code","message","details"}}`.
    GhostDock,
    /// No body of its own (`/metrics`).
    Plain,
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    User,
    Admin,
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Op {
    method: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    shape: Shape,
    auth: Auth,
    params: Vec<Value>,
    body: Option<Value>,
    /// False when the body may be left out (its fields can come as query parameters).
    body_required: bool,
    responses: Map<String, Value>,
}

/// An operation `method` (`get`, `post`, …) called `id`.
pub fn op(method: &'static str, id: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        id,
        summary,
        tag: "",
        shape: Shape::GhostDock,
        auth: Auth::None,
        params: Vec::new(),
        body: None,
        body_required: true,
        responses: Map::new(),
    }
}

impl Op {
    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// An optional query parameter.
    pub fn query(mut self, name: &str, schema: Value, description: &str) -> Self {
        self.params.push(json!({"name": name, "in": "query", "schema": schema, "description": description}));
        self
    }

    /// A required query parameter.
    pub fn query_required(mut self, name: &str, schema: Value, description: &str) -> Self {
        self.params
            .push(json!({"name": name, "in": "query", "required": true, "schema": schema, "description": description}));
        self
    }

    /// `page` and the page-size parameter `size_key` (at most 100).
    pub fn paged(self, size_key: &str, default: i64) -> Self {
        self.query("page", json!({"type": "integer", "minimum": 1, "default": 1}), "page number, from 1").query(
            size_key,
            json!({"type": "integer", "minimum": 1, "default": default}),
            "page size (at most 100)",
        )
    }

    /// A JSON request body.
    pub fn body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self
    }

    /// A JSON request body that may be left out.
    pub fn optional_body(mut self, schema: Value) -> Self {
        self.body = Some(schema);
        self.body_required = false;
        self
    }

    /// A JSON answer `schema` with `status`.
    pub fn ok(mut self, status: u16, schema: Value) -> Self {
        let described = json!({"description": reason(status), "content": {"application/json": {"schema": schema}}});
        self.responses.insert(status.to_string(), described);
        self
    }

    /// A management (seed 000) success: `{"success":true,"data":<schema>}`.
    pub fn ok_data(self, schema: Value) -> Self {
        self.ok(200, obj(&[("success", json!({"const": true})), ("data", schema)], &["success", "data"]))
    }

    /// An answer without a body.
    pub fn empty(mut self, status: u16) -> Self {
        self.responses.insert(status.to_string(), json!({"description": reason(status)}));
        self
    }

    /// An answer of another media type (`*/*` for raw blobs and manifests).
    pub fn raw(mut self, status: u16, media_type: &str) -> Self {
        let described = json!({"description": reason(status), "content": {media_type: {"schema": {}}}});
        self.responses.insert(status.to_string(), described);
        self
    }

    fn document(&self, path_params: &[String]) -> Value {
        let mut params: Vec<Value> = path_params
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(self.params.iter().cloned());
        let mut responses = self.responses.clone();
        if let Some(error) = error_schema(self.shape) {
            responses.insert(
                "default".into(),
                json!({"description": "error", "content": {"application/json": {"schema": error}}}),
            );
        }
        let mut operation = json!({
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
            "parameters": params,
            "responses": responses,
        });
        match self.auth {
            Auth::None => operation["security"] = json!([]),
            Auth::User => operation["x-berth-auth"] = json!("user"),
            Auth::Admin => operation["x-berth-auth"] = json!("admin"),
        }
        if let Some(body) = &self.body {
            operation["requestBody"] =
                json!({"required": self.body_required, "content": {"application/json": {"schema": body}}});
        }
        operation
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        _ => "answer",
    }
}

fn error_schema(shape: Shape) -> Option<Value> {
    let detailed =
        obj(&[("code", string()), ("message", string()), ("details", json!({"type": "object"}))], &["code", "message"]);
    match shape {
        Shape::Management => Some(obj(
            &[("success", json!({"const": false})), ("error", detailed), ("timestamp", string())],
            &["success", "error"],
        )),
        Shape::Security => Some(obj(&[("error", string()), ("code", string())], &["error", "code"])),
        Shape::GhostDock => Some(obj(&[("error", detailed)], &["error"])),
        Shape::Plain => None,
    }
}

/// The router and its document, built together.
pub struct Api {
    router: Router<AppState>,
    /// The document's paths; `None` when only the router is wanted.
    paths: Option<Map<String, Value>>,
}

impl Api {
    /// Starts the router, and the document too when `documented`. A server
    /// builds its router without the document (about 1.5 MB as a JSON tree)
    /// and the document only when `/api/openapi.json` is first asked for.
    pub fn new(documented: bool) -> Self {
        Api { router: Router::new(), paths: documented.then(Map::new) }
    }

    /// Serves `handler` at the axum `path`, documented by `ops`.
    pub fn route<const N: usize>(mut self, path: &str, handler: MethodRouter<AppState>, ops: [Op; N]) -> Self {
        if let Some(paths) = &mut self.paths {
            let (doc_path, params) = openapi_path(path);
            let item = paths.entry(doc_path).or_insert_with(|| json!({}));
            for op in &ops {
                item[op.method] = op.document(&params);
            }
        }
        self.router = self.router.route(path, handler);
        self
    }

    /// The router alone.
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }

    /// The OpenAPI document (empty paths unless built `documented`).
    pub fn document(self, version: &str) -> Value {
        let document = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "berth management API",
                "version": version,
                "description": "The management surfaces of berth (API.md §5–§7): seed 000's envelope API, the \
                    security API, seed 004's API and berth's additions. The registry protocol (/v2) and the \
                    token endpoint (/auth) follow the OCI Distribution Spec and the Docker token spec.",
            },
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "a login JWT or a personal access token (berth_pat_…)"},
                },
            },
            "security": [{"bearer": []}],
            "paths": self.paths.unwrap_or_default(),
        });
        document
    }
}

/// `/api/v1/users/{id}` stays; axum's catch-all `{*path}` becomes `{path}`.
/// Returns the path and its parameter names.
fn openapi_path(path: &str) -> (String, Vec<String>) {
    let mut params = Vec::new();
    let doc: Vec<String> = path
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                params.push(name.to_owned());
                format!("{{{name}}}")
            }
            None => segment.to_owned(),
        })
        .collect();
    (doc.join("/"), params)
}

// Schema helpers.

pub fn string() -> Value {
    json!({"type": "string"})
}

pub fn integer() -> Value {
    json!({"type": "integer"})
}

pub fn boolean() -> Value {
    json!({"type": "boolean"})
}

pub fn number() -> Value {
    json!({"type": "number"})
}

/// `schema` or `null`.
pub fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

pub fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// An object with `props`, of which `required` must be present; other fields are allowed.
pub fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = props.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// An object whose `props` are all required (others allowed).
pub fn record(props: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    obj(props, &required)
}

/// `{"message": string}` plus `extra`.
pub fn message(extra: &[(&str, Value)]) -> Value {
    let mut props = vec![("message", string())];
    props.extend(extra.iter().cloned());
    obj(&props, &["message"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_all_segments_become_parameters() {
        assert_eq!(openapi_path("/api/v1/users/{id}"), ("/api/v1/users/{id}".into(), vec!["id".into()]));
        assert_eq!(openapi_path("/api/accel/pull/{*path}"), ("/api/accel/pull/{path}".into(), vec!["path".into()]));
        assert_eq!(openapi_path("/health"), ("/health".into(), vec![]));
    }
}
