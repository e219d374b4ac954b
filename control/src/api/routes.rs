//! Request routing and the REST verbs: turns HTTP requests into `Api` calls and results
//! into responses (JSON objects, lists, `Table`s, watch streams, or `Status` errors).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};

use super::cluster::{self, ClusterAccess};
use super::errors::ApiError;
use super::logs::{LogRequest, PodLogs};
use super::metrics::{self, ClusterMetrics, NoMetrics};
use super::objects::{Api, DeleteOptions, ListOptions, Part, Propagation, WatchEvent};
use super::resources::{self, ResourceInfo};
use super::streams::{PodStreams, StreamKind, StreamRequest};
use super::{discovery, openapi, protobuf};
use crate::patch::PatchType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Kubernetes' limit on request bodies.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct Router {
    api: Api,
    logs: Option<Arc<dyn PodLogs>>,
    streams: Option<Arc<dyn PodStreams>>,
    metrics: Arc<ClusterMetrics>,
    cluster: Option<ClusterAccess>,
}

/// What a resource path names.
struct Target {
    res: &'static ResourceInfo,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

type Query = HashMap<String, String>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(
        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

fn number<T: std::str::FromStr>(q: &Query, k: &str) -> Result<Option<T>, ApiError> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid value for {k}: {v:?}"))),
    }
}

fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    let label_selector = match q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(LabelSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?),
        None => None,
    };
    let field_selector = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(FieldSelector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?),
        None => None,
    };
    Ok(ListOptions {
        label_selector,
        field_selector,
        resource_version: number(q, "resourceVersion")?,
    })
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid dry run value: {other}: supported values: \"All\""
        ))),
    }
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths.
fn parse_target(segments: &[&str]) -> Result<Target, ApiError> {
    let (group, version, rest) = match segments {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    let find = |plural: &str| {
        resources::find(group, version, plural).ok_or_else(|| ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            kind: plural.into(),
            name: String::new(),
            group: group.into(),
        })
    };
    let owned = |s: &&str| s.to_string();
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let res = find(plural)?;
            match tail {
                [] => Ok(Target {
                    res,
                    namespace: Some(ns.to_string()),
                    name: None,
                    subresource: None,
                }),
                [name] => Ok(Target {
                    res,
                    namespace: Some(ns.to_string()),
                    name: Some(name.to_string()),
                    subresource: None,
                }),
                [name, sub] => Ok(Target {
                    res,
                    namespace: Some(ns.to_string()),
                    name: Some(name.to_string()),
                    subresource: Some(sub.to_string()),
                }),
                _ => Err(not_found_path()),
            }
        }
        [plural, tail @ ..] => {
            let res = find(plural)?;
            Ok(Target {
                res,
                namespace: None,
                name: tail.first().map(owned),
                subresource: tail.get(1).map(owned),
            })
            .and_then(|t| {
                if tail.len() > 2 {
                    Err(not_found_path())
                } else {
                    Ok(t)
                }
            })
        }
        [] => Err(not_found_path()),
    }
}

fn not_found_path() -> ApiError {
    ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        kind: String::new(),
        name: String::new(),
        group: String::new(),
    }
}

/// `kubectl get` asks for server-rendered tables.
fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

impl Router {
    pub fn new(api: Api, logs: Option<Arc<dyn PodLogs>>) -> Self {
        Router {
            api,
            logs,
            streams: None,
            metrics: Arc::new(ClusterMetrics::new(Arc::new(NoMetrics))),
            cluster: None,
        }
    }

    /// Serves `metrics.k8s.io` (`kubectl top`) from what the nodes measured, and this
    /// member's node's measurements to the other members.
    pub fn with_metrics(mut self, metrics: Arc<ClusterMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves `exec` and `attach` through the node's container runtime.
    pub fn with_streams(mut self, streams: Arc<dyn PodStreams>) -> Self {
        self.streams = Some(streams);
        self
    }

    /// Serves the endpoints members join through (see [`super::cluster`]).
    pub fn with_cluster(mut self, access: ClusterAccess) -> Self {
        self.cluster = Some(access);
        self
    }

    pub async fn handle(&self, req: Request<Incoming>, authenticated: bool) -> Response<Body> {
        let method = req.method().clone();
        // With the query: which list or watch (selectors, resourceVersion) was asked for.
        let uri = req.uri().clone();
        let response = if let Some(r) = self.public(&req) {
            r.unwrap_or_else(|e| error_response(&e))
        } else if !authenticated {
            error_response(&ApiError::Unauthorized)
        } else {
            match self.route(req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        };
        tracing::debug!(%method, %uri, status = response.status().as_u16(), "request");
        response
    }

    /// The endpoints that need no client certificate, if `req` is for one.
    fn public(&self, req: &Request<Incoming>) -> Option<Result<Response<Body>, ApiError>> {
        let access = self.cluster.as_ref()?;
        match (req.method(), req.uri().path()) {
            (&Method::GET, cluster::CACERTS) => {
                let mut r = Response::new(full(access.ca.cert_pem.clone()));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, "text/plain".parse().expect("static"));
                Some(Ok(r))
            }
            (&Method::GET, cluster::BOOTSTRAP) => Some(access.bootstrap(req.headers()).map(|b| {
                json_response(StatusCode::OK, &serde_json::to_value(b).unwrap_or_default())
            })),
            _ => None,
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
        match (req.method(), req.uri().path()) {
            (&Method::GET, cluster::STATUS) => return ok(cluster::status(self.api.store()).await?),
            (&Method::POST, cluster::ROTATE_KEY) => {
                return ok(cluster::rotate_key(self.api.store()).await?)
            }
            (&Method::GET, metrics::NODE_USAGE) => {
                return ok(serde_json::to_value(self.metrics.local()).unwrap_or_default())
            }
            (&Method::GET, cluster::CHECK_SECRETS) => {
                return ok(cluster::check_secrets(self.api.store())?)
            }
            (&Method::POST, cluster::MEMBERS) => {
                let store = self.api.store().clone();
                let (code, v) = cluster::add_member(&store, read_json(req).await?).await?;
                return Ok(json_response(code, &v));
            }
            (&Method::DELETE, path) if path.starts_with(cluster::MEMBERS) => {
                let id = path
                    .trim_start_matches(cluster::MEMBERS)
                    .trim_start_matches('/');
                return ok(cluster::remove_member(self.api.store(), id).await?);
            }
            _ => {}
        }
        if req.method() == Method::GET {
            match segments.as_slice() {
                ["version"] => return ok(discovery::version()),
                ["healthz" | "livez" | "readyz"] => {
                    let mut r = Response::new(full("ok"));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, "text/plain".parse().expect("static"));
                    return Ok(r);
                }
                ["api"] => return ok(discovery::core_versions()),
                ["apis"] => return ok(discovery::group_list()),
                ["api", v] => {
                    return discovery::resource_list("", v)
                        .map_or_else(|| Err(not_found_path()), ok)
                }
                ["apis", g] => {
                    return discovery::api_group(g).map_or_else(|| Err(not_found_path()), ok)
                }
                ["apis", g, v] => {
                    return discovery::resource_list(g, v).map_or_else(|| Err(not_found_path()), ok)
                }
                ["openapi", "v2"] => {
                    let accept = req
                        .headers()
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if accept.contains("protobuf") {
                        let mut r = Response::new(full(openapi::v2_protobuf()));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            openapi::V2_PROTOBUF_TYPE.parse().expect("static"),
                        );
                        return Ok(r);
                    }
                    return ok(openapi::v2_json());
                }
                ["apis", metrics::GROUP, metrics::VERSION, rest @ ..] => {
                    let q = parse_query(req.uri().query());
                    self.consistent_read(&q).await?;
                    return ok(metrics::serve(
                        &self.api,
                        self.metrics.as_ref(),
                        rest,
                        &list_options(&q)?,
                    )?);
                }
                ["openapi", "v3"] => return ok(openapi::root()),
                ["openapi", "v3", rest @ ..] => {
                    return openapi::group_version(&rest.join("/"))
                        .map_or_else(|| Err(not_found_path()), ok)
                }
                _ => {}
            }
        }
        if let ["apis", metrics::GROUP, ..] = segments.as_slice() {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method()
            )));
        }
        let target = parse_target(&segments)?;
        let query = parse_query(req.uri().query());
        self.resource(req, target, query).await
    }

    /// Kubernetes reads are consistent (quorum) unless the client asks for
    /// `resourceVersion=0`, which any member may answer from what it has applied.
    async fn consistent_read(&self, q: &Query) -> Result<(), ApiError> {
        if q.get("resourceVersion").is_some_and(|rv| rv == "0") {
            return Ok(());
        }
        let barrier = self.api.store().read_barrier().await;
        barrier.map_err(|e| ApiError::from_store(e, "", ""))
    }

    async fn resource(
        &self,
        req: Request<Incoming>,
        t: Target,
        q: Query,
    ) -> Result<Response<Body>, ApiError> {
        let ns = t.namespace.as_deref();
        let res = t.res;
        let table = wants_table(&req);
        let method = req.method().clone();
        match (&method, t.name.as_deref(), t.subresource.as_deref()) {
            (&Method::GET, None, None) if flag(&q, "watch") => self.watch(res, ns, &q, table),
            (&Method::GET, None, None) => {
                self.consistent_read(&q).await?;
                let (items, revision) = self.api.list(res, ns, &list_options(&q)?)?;
                let list_meta = json!({"resourceVersion": revision.to_string()});
                if table {
                    return Ok(json_response(
                        StatusCode::OK,
                        &table::table(
                            res.plural,
                            &items,
                            chrono::Utc::now(),
                            include_object(&q),
                            list_meta,
                        ),
                    ));
                }
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": format!("{}List", res.kind),
                        "apiVersion": res.api_version(),
                        "metadata": list_meta,
                        "items": items,
                    }),
                ))
            }
            (&Method::POST, None, None) => {
                let body = read_json(req).await?;
                let created = self.api.create(res, ns, body, dry_run(&q)?).await?;
                Ok(json_response(StatusCode::CREATED, &created))
            }
            (&Method::DELETE, None, None) => {
                let opts = delete_options(&q, read_optional_json(req).await?)?;
                let (items, _) = self.api.list(res, ns, &list_options(&q)?)?;
                let mut deleted = Vec::new();
                for item in items {
                    let name = super::objects::name_of(&item).to_string();
                    let item_ns = item
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    match self.api.delete(res, item_ns.as_deref(), &name, &opts).await {
                        Ok((obj, _)) => deleted.push(obj),
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": format!("{}List", res.kind),
                        "apiVersion": res.api_version(),
                        "metadata": {},
                        "items": deleted,
                    }),
                ))
            }
            (&Method::GET, Some(name), None | Some("status")) => {
                self.consistent_read(&q).await?;
                let obj = self.api.get(res, ns, name)?;
                if table {
                    let rv = obj
                        .pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null);
                    return Ok(json_response(
                        StatusCode::OK,
                        &table::table(
                            res.plural,
                            &[obj],
                            chrono::Utc::now(),
                            include_object(&q),
                            json!({"resourceVersion": rv}),
                        ),
                    ));
                }
                Ok(json_response(StatusCode::OK, &obj))
            }
            (&Method::PUT, Some(name), sub @ (None | Some("status"))) => {
                let part = part(res, sub)?;
                let body = read_json(req).await?;
                let updated = self
                    .api
                    .update(res, ns, name, body, part, dry_run(&q)?)
                    .await?;
                Ok(json_response(StatusCode::OK, &updated))
            }
            (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
                let part = part(res, sub)?;
                let ty = patch_type(&req)?;
                let body = read_body(req).await?;
                let patched = self
                    .api
                    .patch(res, ns, name, ty, &body, part, dry_run(&q)?)
                    .await?;
                Ok(json_response(StatusCode::OK, &patched))
            }
            (&Method::DELETE, Some(name), None) => {
                let opts = delete_options(&q, read_optional_json(req).await?)?;
                let (obj, gone) = self.api.delete(res, ns, name, &opts).await?;
                Ok(json_response(
                    if gone {
                        StatusCode::OK
                    } else {
                        StatusCode::ACCEPTED
                    },
                    &obj,
                ))
            }
            (&Method::GET, Some(name), Some("log")) if res.kind == "Pod" => {
                self.log(ns.unwrap_or_default(), name, &q).await
            }
            (&Method::GET | &Method::POST, Some(name), Some(sub @ ("exec" | "attach")))
                if res.kind == "Pod" =>
            {
                let kind = if sub == "exec" {
                    StreamKind::Exec
                } else {
                    StreamKind::Attach
                };
                let name = name.to_string();
                self.stream(req, ns.unwrap_or_default(), &name, kind).await
            }
            (&Method::POST, Some(name), Some("binding")) if res.kind == "Pod" => {
                let body = read_json(req).await?;
                let node = body
                    .pointer("/target/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if node.is_empty() {
                    return Err(ApiError::BadRequest(
                        "binding target.name is required".into(),
                    ));
                }
                self.api.bind(ns.unwrap_or_default(), name, node).await?;
                Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                ))
            }
            (&Method::GET, Some(name), Some("scale")) if res.subresources.contains(&"scale") => Ok(
                json_response(StatusCode::OK, &self.api.get_scale(res, ns, name)?),
            ),
            (&Method::PUT, Some(name), Some("scale")) if res.subresources.contains(&"scale") => {
                let body = read_json(req).await?;
                let scale = self
                    .api
                    .update_scale(res, ns, name, body, dry_run(&q)?)
                    .await?;
                Ok(json_response(StatusCode::OK, &scale))
            }
            (&Method::PATCH, Some(name), Some("scale")) if res.subresources.contains(&"scale") => {
                let ty = patch_type(&req)?;
                let body = read_body(req).await?;
                let scale = self
                    .api
                    .patch_scale(res, ns, name, ty, &body, dry_run(&q)?)
                    .await?;
                Ok(json_response(StatusCode::OK, &scale))
            }
            (_, _, Some(sub)) if !res.subresources.contains(&sub) => Err(not_found_path()),
            _ => Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            ))),
        }
    }

    fn watch(
        &self,
        res: &'static ResourceInfo,
        ns: Option<&str>,
        q: &Query,
        table: bool,
    ) -> Result<Response<Body>, ApiError> {
        let mut watch = self.api.watch(res, ns, list_options(q)?)?;
        let timeout = number::<u64>(q, "timeoutSeconds")?.map(std::time::Duration::from_secs);
        let include = include_object(q);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(64);
        tokio::spawn(async move {
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
            loop {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, watch.next()).await {
                        Ok(n) => n,
                        Err(_) => return,
                    },
                    None => watch.next().await,
                };
                let Some(WatchEvent { kind, object }) = next else {
                    return;
                };
                let object = if table && kind != "ERROR" {
                    let rv = object
                        .pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null);
                    table::table(
                        res.plural,
                        &[object],
                        chrono::Utc::now(),
                        include,
                        json!({"resourceVersion": rv}),
                    )
                } else {
                    object
                };
                let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
                    .unwrap_or_default();
                line.push(b'\n');
                // A failed send means the client went away: the watch ends.
                if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() || kind == "ERROR" {
                    return;
                }
            }
        });
        let body = http_body_util::BodyExt::boxed_unsync(StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ));
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("static"),
        );
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            "no-cache, private".parse().expect("static"),
        );
        Ok(r)
    }

    async fn log(&self, ns: &str, name: &str, q: &Query) -> Result<Response<Body>, ApiError> {
        let pods = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let pod = self.api.get(pods, Some(ns), name)?;
        let container = choose_container(
            &pod,
            q.get("container").map(String::as_str).unwrap_or_default(),
        )?;
        let request = LogRequest {
            container,
            follow: flag(q, "follow"),
            previous: flag(q, "previous"),
            timestamps: flag(q, "timestamps"),
            tail_lines: number(q, "tailLines")?,
            limit_bytes: number(q, "limitBytes")?,
            since_seconds: number(q, "sinceSeconds")?,
        };
        let logs = self.logs.as_ref().ok_or_else(|| {
            ApiError::BadRequest(format!("pod {name} has no node serving its logs"))
        })?;
        let stream = logs.open(&pod, &request)?;
        let body = http_body_util::BodyExt::boxed_unsync(StreamBody::new(
            stream.map(|chunk| chunk.map(Frame::data)),
        ));
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "text/plain".parse().expect("static"));
        Ok(r)
    }
}

impl Router {
    /// `exec` / `attach`: the node names the runtime's streaming endpoint, and the
    /// client's upgraded connection is proxied there.
    async fn stream(
        &self,
        req: Request<Incoming>,
        ns: &str,
        name: &str,
        kind: StreamKind,
    ) -> Result<Response<Body>, ApiError> {
        let pods = resources::find("", "v1", "pods")
            .ok_or_else(|| ApiError::Internal("pods unknown".into()))?;
        let pod = self.api.get(pods, Some(ns), name)?;
        let mut request = StreamRequest::parse(kind, req.uri().query())?;
        request.container = choose_container(&pod, &request.container)?;
        if pod["status"]["phase"] == "Succeeded" || pod["status"]["phase"] == "Failed" {
            return Err(ApiError::BadRequest(format!(
                "cannot exec into a container in a completed pod; current phase is {}",
                pod["status"]["phase"].as_str().unwrap_or_default()
            )));
        }
        let streams = self.streams.as_ref().ok_or_else(|| {
            ApiError::BadRequest(format!("pod {name} has no node serving its streams"))
        })?;
        let url = streams.stream_url(&pod, kind, &request).await?;
        super::upgrade::proxy(req, &url).await
    }
}

fn part(res: &ResourceInfo, sub: Option<&str>) -> Result<Part, ApiError> {
    match sub {
        None => Ok(Part::Main),
        Some("status") if res.subresources.contains(&"status") => Ok(Part::Status),
        Some(_) => Err(not_found_path()),
    }
}

/// The container a log request is about: the named one, or the only (or default) one.
fn choose_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let name = super::objects::name_of(pod);
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][k].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    if !requested.is_empty() {
        if names.contains(&requested) {
            return Ok(requested.to_string());
        }
        return Err(ApiError::BadRequest(format!(
            "container {requested} is not valid for pod {name}"
        )));
    }
    if let Some(default) = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
    {
        return Ok(default.to_string());
    }
    let main: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match main.as_slice() {
        [only] => Ok(only.to_string()),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            main.join(" ")
        ))),
    }
}

fn delete_options(q: &Query, body: Option<Value>) -> Result<DeleteOptions, ApiError> {
    let body = body.unwrap_or(Value::Null);
    let grace = match number::<i64>(q, "gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => body["gracePeriodSeconds"].as_i64(),
    };
    let dry = dry_run(q)?
        || body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let policy = q
        .get("propagationPolicy")
        .map(String::as_str)
        .or_else(|| body["propagationPolicy"].as_str())
        .filter(|p| !p.is_empty());
    // The deprecated `orphanDependents` says Orphan (true) or Background (false).
    let orphan = match q.get("orphanDependents") {
        Some(v) => Some(v == "true"),
        None => body["orphanDependents"].as_bool(),
    };
    let propagation = Propagation::from_options(policy, orphan)?;
    Ok(DeleteOptions {
        propagation,
        grace_period_seconds: grace,
        precondition_uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok()),
        dry_run: dry,
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))
}

fn decode(ct: &str, body: &[u8]) -> Result<Value, ApiError> {
    if ct.starts_with("application/yaml") {
        serde_yaml::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as YAML: {e}"
            ))
        })
    } else if ct.starts_with(protobuf::CONTENT_TYPE) {
        protobuf::decode(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as protobuf: {e}"
            ))
        })
    } else if ct.is_empty() || ct.starts_with("application/json") || ct.starts_with("*/*") {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        })
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {ct:?})"
        )))
    }
}

fn patch_type(req: &Request<Incoming>) -> Result<PatchType, ApiError> {
    let ct = content_type(req);
    PatchType::from_content_type(&ct).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"))
    })
}

fn content_type(req: &Request<Incoming>) -> String {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    ct.unwrap_or_default().to_string()
}

async fn read_json(req: Request<Incoming>) -> Result<Value, ApiError> {
    let ct = content_type(&req);
    decode(&ct, &read_body(req).await?)
}

async fn read_optional_json(req: Request<Incoming>) -> Result<Option<Value>, ApiError> {
    let ct = content_type(&req);
    let body = read_body(req).await?;
    if body.is_empty() {
        return Ok(None);
    }
    decode(&ct, &body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_targets() {
        let t = parse_target(&["api", "v1", "namespaces", "default", "pods", "x", "log"]).unwrap();
        assert_eq!(t.res.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("x"));
        assert_eq!(t.subresource.as_deref(), Some("log"));
        // A namespace's own subresource is not a namespaced collection.
        let t = parse_target(&["api", "v1", "namespaces", "kube-system", "status"]).unwrap();
        assert_eq!(t.res.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_target(&["api", "v1", "pods"]).unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_target(&["apis", "node.k8s.io", "v1", "runtimeclasses", "wasmtime"]).unwrap();
        assert_eq!(t.res.kind, "RuntimeClass");
        assert!(parse_target(&["api", "v1", "widgets"]).is_err());
    }

    #[test]
    fn log_container_defaults_like_kubernetes() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        assert!(choose_container(&pod, "")
            .unwrap_err()
            .to_string()
            .contains("choose one of: [a b]"));
        assert_eq!(choose_container(&pod, "b").unwrap(), "b");
        assert!(choose_container(&pod, "zz").is_err());
    }
}
