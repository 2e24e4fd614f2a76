//! HTTP front: routing, discovery, query parameters, JSON bodies and watch streams.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiServer;
use super::store::{
    ApiError, DeleteOpts, FieldReq, Filter, Kind, LabelReq, PatchBody, PatchKind, Result,
};
use super::table::to_table;

/// How often a real server's watch cache sends a watcher a bookmark (`bookmarkFrequency`).
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
const BODY_LIMIT: usize = 8 << 20;

pub(crate) fn router(server: ApiServer) -> Router {
    Router::new().fallback(handle).with_state(server)
}

async fn handle(AxState(server): AxState<ApiServer>, req: Request) -> Response {
    server.count_request(req.method(), req.uri().path());
    match dispatch(server, req).await {
        Ok(r) => r,
        Err(e) => json_response(e.code, &e.status()),
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn not_found() -> ApiError {
    ApiError {
        details: Some(json!({})),
        ..ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }
}

struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    fn truthy(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }

    fn dry_run(&self) -> Result<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}"
            ))),
        }
    }
}

async fn dispatch(server: ApiServer, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let params = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default(),
    );
    let segs: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    if parts.method == Method::GET {
        let st = server.lock();
        let discovery = match segs.as_slice() {
            ["version"] => Some(json!({
                "major": "1", "minor": "34",
                "emulationMajor": "1", "emulationMinor": "34",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "33",
                "gitVersion": "v1.34.0-slurm-maint-embedded",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean",
                "buildDate": "2025-08-27T00:00:00Z",
                "goVersion": "go1.24.4", "compiler": "gc", "platform": "linux/amd64",
            })),
            ["healthz" | "readyz" | "livez"] => {
                return Ok(Response::new(Body::from("ok")));
            }
            ["api"] => Some(json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            })),
            ["apis"] => Some(group_list(st.kinds())),
            ["api", "v1"] => Some(resource_list(st.kinds(), "", "v1")),
            ["apis", g] => group_list(st.kinds())["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["name"] == *g).cloned())
                .map(|mut x| {
                    x["kind"] = "APIGroup".into();
                    x["apiVersion"] = "v1".into();
                    x
                }),
            ["apis", g, v] if st.kinds().iter().any(|k| k.group == *g && k.version == *v) => {
                Some(resource_list(st.kinds(), g, v))
            }
            ["openapi", "v3"] => Some(openapi_root(st.kinds())),
            ["openapi", "v3", "api", "v1"] => Some(openapi_doc(st.kinds(), "", "v1")),
            ["openapi", "v3", "apis", g, v]
                if st.kinds().iter().any(|k| k.group == *g && k.version == *v) =>
            {
                Some(openapi_doc(st.kinds(), g, v))
            }
            _ => None,
        };
        if let Some(d) = discovery {
            return Ok(json_response(200, &d));
        }
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (ns, tail) = {
        let st = server.lock();
        let namespaced_plural = |p: &str| {
            st.find_kind(group, version, p)
                .is_some_and(|k| k.namespaced)
        };
        if rest[0] == "namespaces" && rest.len() >= 3 && namespaced_plural(rest[2]) {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        }
    };
    if tail.len() > 3 {
        return Err(not_found());
    }
    let kind = server
        .lock()
        .find_kind(group, version, tail[0])
        .ok_or_else(not_found)?;
    let name = tail.get(1).copied();
    let status = match tail.get(2) {
        None => false,
        Some(&"status") if kind.status => true,
        Some(_) => return Err(not_found()),
    };
    if (kind.namespaced && name.is_some() && ns.is_none()) || (!kind.namespaced && ns.is_some()) {
        return Err(not_found());
    }
    let ns = ns.as_deref();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let method = parts.method;
    let table = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').next().unwrap_or_default().contains("as=Table"));
    let Some(name) = name else {
        let req = CollectionRequest {
            method,
            params: &params,
            bytes: &bytes,
            table,
        };
        return collection(server, &kind, ns, req).await;
    };
    let dry_run = params.dry_run()?;
    let mut st = server.lock();
    st.strict = params.get("fieldValidation") == Some("Strict");
    match method {
        Method::GET if table => {
            let obj = st.get(&kind, ns, name)?;
            Ok(json_response(200, &to_table(&kind, &[obj], st.rv)))
        }
        Method::GET => st.get(&kind, ns, name).map(|o| json_response(200, &o)),
        Method::PUT => {
            let body = parse_json(&bytes)?;
            st.update(&kind, ns, name, body, status, dry_run)
                .map(|o| json_response(200, &o))
        }
        Method::PATCH => {
            let how = match content_type.as_str() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" if kind.crd.is_none() => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/apply-patch+yaml" => PatchKind::Apply {
                    manager: params.get("fieldManager").unwrap_or_default().to_string(),
                    force: params.truthy("force"),
                },
                _ => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml{}",
                            if kind.crd.is_none() {
                                ", application/strategic-merge-patch+json"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            };
            let body = if let PatchKind::Apply { .. } = how {
                if params.get("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError {
                        details: Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [{"reason": "FieldValueRequired",
                                        "message": "Required value: is required for apply patch",
                                        "field": "fieldManager"}]})),
                        ..ApiError::new(
                            422,
                            "Invalid",
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                        )
                    });
                }
                parse_json(&bytes).or_else(|_| {
                    serde_yaml::from_slice::<Value>(&bytes)
                        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
                })?
            } else {
                parse_json(&bytes)?
            };
            st.patch(&kind, ns, name, PatchBody { how, body }, status, dry_run)
                .map(|o| json_response(200, &o))
        }
        Method::DELETE => {
            let opts = delete_opts(&bytes, &params)?;
            let (obj, gone) = st.delete(&kind, ns, name, &opts)?;
            if gone && kind.plural != "namespaces" {
                let mut details =
                    json!({"name": name, "kind": kind.plural, "uid": obj["metadata"]["uid"]});
                if !kind.group.is_empty() {
                    details["group"] = kind.group.clone().into();
                }
                Ok(json_response(
                    200,
                    &json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "details": details,
                    }),
                ))
            } else {
                Ok(json_response(200, &obj))
            }
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

struct CollectionRequest<'a> {
    method: Method,
    params: &'a Params,
    bytes: &'a Bytes,
    table: bool,
}

async fn collection(
    server: ApiServer,
    kind: &Kind,
    ns: Option<&str>,
    req: CollectionRequest<'_>,
) -> Result<Response> {
    let CollectionRequest {
        method,
        params,
        bytes,
        table,
    } = req;
    let filter = Filter {
        group: kind.storage_group.clone(),
        plural: kind.plural.clone(),
        ns: ns.map(String::from),
        labels: parse_labels(params.get("labelSelector").unwrap_or_default())?,
        fields: parse_fields(kind, params.get("fieldSelector").unwrap_or_default())?,
    };
    match method {
        Method::GET if params.truthy("watch") => {
            let timeout = params
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs);
            let rv = match params.get("resourceVersion") {
                None | Some("" | "0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?),
            };
            let match_ = params.get("resourceVersionMatch").unwrap_or_default();
            let initial = match params.get("sendInitialEvents") {
                Some(_) if match_ != "NotOlderThan" => {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                        "FieldValueForbidden",
                    ));
                }
                Some(v) => matches!(v, "true" | "1"),
                None if !match_.is_empty() => {
                    return Err(list_options_invalid(
                        "resourceVersionMatch",
                        "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                        "FieldValueForbidden",
                    ));
                }
                // 1.34 (WatchList on) treats a watch from "" or "0" as sendInitialEvents=true.
                None => rv.is_none(),
            };
            let opts = WatchOpts {
                rv,
                initial,
                bookmarks: params.truthy("allowWatchBookmarks"),
                timeout,
                table,
            };
            Ok(watch(server, kind.clone(), filter, opts))
        }
        Method::GET => {
            let st = server.lock();
            let after = match params.get("continue") {
                None | Some("") => None,
                Some(token) => Some(decode_continue(token)?),
            };
            let limit = params
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let (items, remaining, last) = st.list(kind, &filter, after.as_ref(), limit);
            if table {
                return Ok(json_response(200, &to_table(kind, &items, st.rv)));
            }
            let mut meta = json!({"resourceVersion": st.rv.to_string()});
            if let Some((ns, name)) = last {
                meta["continue"] = encode_continue(&ns, &name).into();
                meta["remainingItemCount"] = remaining.into();
            }
            Ok(json_response(
                200,
                &json!({"kind": kind.list_kind, "apiVersion": kind.api_version(), "metadata": meta, "items": items}),
            ))
        }
        Method::POST => {
            if kind.namespaced && ns.is_none() {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                ));
            }
            let body = parse_json(bytes)?;
            let mut st = server.lock();
            st.strict = params.get("fieldValidation") == Some("Strict");
            let obj = st.create(kind, ns, body, params.dry_run()?)?;
            Ok(json_response(201, &obj))
        }
        Method::DELETE => {
            let opts = delete_opts(bytes, params)?;
            let mut st = server.lock();
            let mut items = vec![];
            for (ns, name) in st.matching_names(&filter) {
                let ns = (!ns.is_empty()).then_some(ns);
                if let Ok((obj, _)) = st.delete(kind, ns.as_deref(), &name, &opts) {
                    items.push(obj);
                }
            }
            Ok(json_response(
                200,
                &json!({"kind": kind.list_kind, "apiVersion": kind.api_version(),
                        "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

fn delete_opts(bytes: &[u8], params: &Params) -> Result<DeleteOpts> {
    let body: Value = if bytes.is_empty() {
        json!({})
    } else {
        parse_json(bytes)?
    };
    let policy = body["propagationPolicy"]
        .as_str()
        .or(params.get("propagationPolicy"));
    let dry_run = params.dry_run()?
        || body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    Ok(DeleteOpts {
        orphan: policy == Some("Orphan") || body["orphanDependents"] == json!(true),
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run,
    })
}

fn encode_continue(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(String, String)> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ns, name) = s.split_once('/').ok_or_else(bad)?;
    Ok((ns.into(), name.into()))
}

/// Kubernetes label selector syntax: `a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a`.
pub(crate) fn parse_labels(s: &str) -> Result<Vec<LabelReq>> {
    let mut terms = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    let bad = |t: &str| ApiError::bad_request(format!("unable to parse requirement: {t:?}"));
    let mut reqs = vec![];
    for t in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let req = if let Some(open) = t.find('(') {
            let close = t.rfind(')').filter(|c| *c > open).ok_or_else(|| bad(t))?;
            let values: Vec<String> = t[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let head = t[..open].trim();
            if let Some(k) = head.strip_suffix("notin") {
                LabelReq::NotIn(k.trim().into(), values)
            } else if let Some(k) = head.strip_suffix("in") {
                LabelReq::In(k.trim().into(), values)
            } else {
                return Err(bad(t));
            }
        } else if let Some((k, v)) = t.split_once("!=") {
            LabelReq::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = t.split_once("==") {
            LabelReq::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = t.split_once('=') {
            LabelReq::Eq(k.trim().into(), v.trim().into())
        } else if let Some(k) = t.strip_prefix('!') {
            LabelReq::NotExists(k.trim().into())
        } else if t.contains(char::is_whitespace) {
            return Err(bad(t));
        } else {
            LabelReq::Exists(t.into())
        };
        reqs.push(req);
    }
    Ok(reqs)
}

/// Field selectors a real server supports for the kind (metadata.name and
/// metadata.namespace everywhere, a few more for Events and Secrets), as paths in the
/// stored object.
fn parse_fields(kind: &Kind, s: &str) -> Result<Vec<FieldReq>> {
    let mut out = vec![];
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (path, value, eq) = if let Some((k, v)) = t.split_once("!=") {
            (k, v, false)
        } else if let Some((k, v)) = t.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = t.split_once('=') {
            (k, v, true)
        } else {
            return Err(ApiError::bad_request(format!("invalid selector: '{t}'")));
        };
        let path = path.trim();
        let stored = if kind.is_event() {
            super::events::selector_path(!kind.group.is_empty(), path)
        } else {
            let supported = matches!(path, "metadata.name" | "metadata.namespace")
                || (kind.group.is_empty() && kind.plural == "secrets" && path == "type");
            supported.then(|| path.to_string())
        };
        let Some(stored) = stored else {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {path}"
            )));
        };
        out.push((stored, value.trim().to_string(), eq));
    }
    Ok(out)
}

/// What a watch asks for.
struct WatchOpts {
    /// Start after this resource version; `None` for "" or "0".
    rv: Option<u64>,
    /// Send the current state first (`sendInitialEvents`, or a watch from "" / "0").
    initial: bool,
    bookmarks: bool,
    timeout: Option<Duration>,
    table: bool,
}

/// 422 on `ListOptions`, as a real server refuses bad watch parameters.
fn list_options_invalid(field: &str, message: &str, reason: &str) -> ApiError {
    ApiError {
        details: Some(json!({"group": "meta.k8s.io", "kind": "ListOptions",
            "causes": [{"reason": reason, "message": message, "field": field}]})),
        ..ApiError::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: {message}"),
        )
    }
}

/// When a real server's watch cache sends the next periodic bookmark: every minute, and
/// once 2 s before the watch's deadline if that comes first; none once that has passed.
fn next_bookmark(
    now: tokio::time::Instant,
    deadline: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    let heartbeat = now + BOOKMARK_EVERY;
    let Some(deadline) = deadline else {
        return Some(heartbeat);
    };
    let pretimeout = deadline.checked_sub(Duration::from_secs(2))?;
    let at = heartbeat.min(pretimeout);
    (at > now).then_some(at)
}

fn watch(server: ApiServer, kind: Kind, filter: Filter, opts: WatchOpts) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let table = opts.table;
        let line = |mut v: Value| {
            if table && matches!(v["type"].as_str(), Some("ADDED" | "MODIFIED" | "DELETED")) {
                let rv = v["object"]["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or_default();
                v["object"] = to_table(&kind, &[v["object"].take()], rv);
            }
            Bytes::from(format!("{v}\n"))
        };
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"type": "BOOKMARK", "object": {
                "kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta,
            }})
        };
        let mut notify = server.lock().subscribe();
        let started = tokio::time::Instant::now();
        let deadline = opts.timeout.map(|t| started + t);
        let (initial, mut cursor) = match (opts.initial, opts.rv) {
            (true, _) => server.lock().snapshot(&kind, &filter),
            (false, Some(rv)) => (vec![], rv),
            (false, None) => (vec![], server.lock().rv),
        };
        for e in initial {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        // Bookmarks carry the resource's latest version and only go out once that is
        // newer than where the watch started.
        let floor = cursor;
        let mut next = if opts.bookmarks {
            next_bookmark(started, deadline)
        } else {
            None
        };
        if opts.initial && opts.bookmarks {
            if tx.send(line(bookmark(cursor, true))).await.is_err() {
                return;
            }
            // The watch cache takes such a watcher up again at its next bookmark tick
            // (about a second), whatever the deadline.
            let tick = started + Duration::from_millis(500);
            next = Some(next.map_or(tick, |n| n.min(tick)));
        }
        loop {
            let batch = server.lock().events_since(&kind, cursor, &filter);
            match batch {
                Ok((events, next_cursor)) => {
                    cursor = next_cursor;
                    for e in events {
                        if tx.send(line(e)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(oldest) => {
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure",
                        "message": format!("too old resource version: {cursor} ({oldest})"),
                        "reason": "Expired", "code": 410,
                    });
                    let _ = tx
                        .send(line(json!({"type": "ERROR", "object": status})))
                        .await;
                    return;
                }
            }
            let until = |at: Option<tokio::time::Instant>| async move {
                match at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = notify.changed() => if changed.is_err() { return },
                _ = until(deadline) => return,
                _ = until(next) => {
                    let now = tokio::time::Instant::now();
                    next = next_bookmark(now, deadline);
                    let latest = server.lock().latest_rv(&kind);
                    if latest > floor && tx.send(line(bookmark(latest, false))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

fn group_list(kinds: &[Kind]) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        let vs = groups.entry(&k.group).or_default();
        if !vs.contains(&k.version.as_str()) {
            vs.push(&k.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(kinds: &[Kind], group: &str, version: &str) -> Value {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = vec![];
    for k in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut r = json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs,
        });
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            r["categories"] = json!(k.categories);
        }
        resources.push(r);
        if k.status {
            resources.push(json!({
                "name": format!("{}/status", k.plural), "singularName": "",
                "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// OpenAPI v3 discovery: one document per group/version.
fn openapi_root(kinds: &[Kind]) -> Value {
    let mut paths = serde_json::Map::new();
    for k in kinds {
        let gv = if k.group.is_empty() {
            "api/v1".to_string()
        } else {
            format!("apis/{}/{}", k.group, k.version)
        };
        let url = format!("/openapi/v3/{gv}?hash={}", kinds.len());
        paths.insert(gv, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document: the item PATCH operation of each kind, tagged with its
/// group/version/kind and the `fieldValidation` parameter, which is what kubectl checks
/// before leaving validation to the server; CRD schemas when there are any.
fn openapi_doc(kinds: &[Kind], group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for k in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if k.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("{prefix}/{}/{{name}}", k.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": k.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        paths.insert(
            path,
            json!({"patch": {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                "responses": {"200": {"description": "OK"}},
            }}),
        );
        let reversed: Vec<&str> = group.split('.').rev().collect();
        let name = format!("{}.{version}.{}", reversed.join("."), k.kind);
        let mut schema = k
            .schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
